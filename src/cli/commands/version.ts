import { defineCommand } from "citty";
import { formatVersionLine, versionInfo } from "../../version.ts";
import { globalArgs, jsonArg } from "../_shared.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version of this dso binary" },
  args: { ...jsonArg, ...globalArgs },
  run({ args }) {
    const info = versionInfo();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(info)}\n`);
      return;
    }
    process.stdout.write(`${formatVersionLine(info)}\n`);
  },
});
