import { defineCommand } from "citty";
import { DsoError } from "../../errors.ts";
import { collectCommands, completionScript, SHELLS, type Shell } from "../completion.ts";
import { BUILTIN_COMMANDS } from "../usage.ts";
import { globalArgs } from "../_shared.ts";

export default defineCommand({
  meta: { name: "completion", description: "Print a shell completion script: source <(dso completion bash); also zsh and fish" },
  args: {
    shell: { type: "positional", required: true, description: `Shell: ${SHELLS.join(", ")}` },
    ...globalArgs,
  },
  async run({ args }) {
    if (!(SHELLS as readonly string[]).includes(args.shell)) {
      throw new DsoError("USAGE", `no completion for shell "${args.shell}"; known: ${SHELLS.join(", ")}`);
    }
    // Imported here: root.ts lists this command, so a static import would be circular.
    const { rootCommand } = await import("../root.ts");
    process.stdout.write(completionScript(args.shell as Shell, await collectCommands(rootCommand, BUILTIN_COMMANDS)));
  },
});
