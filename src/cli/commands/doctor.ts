import { defineCommand } from "citty";
import { runChecks } from "../../doctor/checks.ts";
import { configArg, formatTable, globalArgs, jsonArg } from "../_shared.ts";

export default defineCommand({
  meta: { name: "doctor", description: "Check Docker, the socket, tmpfs, swap, the config, the file provider's permissions and which delivery modes work here; exit 1 if any check fails" },
  args: { ...configArg, ...jsonArg, ...globalArgs },
  async run({ args }) {
    const results = await runChecks({ env: process.env, configFlag: args.config });
    const failed = results.some((r) => r.status === "fail");
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ok: !failed, checks: results })}\n`);
    } else {
      const rows = results.map((r) => [r.check, r.status.toUpperCase(), r.detail]);
      process.stdout.write(`${formatTable(["CHECK", "STATUS", "DETAIL"], rows)}\n`);
    }
    if (failed) process.exitCode = 1;
  },
});
