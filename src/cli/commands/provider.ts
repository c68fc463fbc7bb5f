import { defineCommand } from "citty";
import { claimStdout, serveProvider } from "../../../providers/host.ts";
import { loadProvider, providerTypes } from "../../../providers/registry.ts";
import { DsoError } from "../../errors.ts";
import { hardenProcess } from "../../os/libc.ts";
import { globalArgs } from "../_shared.ts";

export default defineCommand({
  meta: { name: "provider", description: "Internal: a provider process, started by the agent (not meant to be run by hand)" },
  args: {
    type: { type: "positional", description: "Provider type", required: true },
    ...globalArgs,
  },
  async run({ args }) {
    const known = providerTypes();
    if (!known.includes(args.type)) {
      throw new DsoError("USAGE", `unknown provider type "${args.type}"; known: ${known.join(", ")}`);
    }
    if (process.stdin.isTTY || process.stdout.isTTY) {
      throw new DsoError(
        "USAGE",
        "dso provider is internal: the agent starts it and speaks to it over a pipe; it is not meant to be run by hand",
        { hint: "run 'dso agent' instead" },
      );
    }
    // A provider holds values during a fetch: no core file, not dumpable.
    hardenProcess();
    const write = claimStdout();
    const factory = await loadProvider(args.type);
    if (!factory) throw new DsoError("USAGE", `unknown provider type "${args.type}"`);
    process.exitCode = await serveProvider(factory, {
      input: Bun.stdin.stream(),
      write,
      logLine: (line) => process.stderr.write(`${line}\n`),
      env: process.env,
    });
  },
});
