import { defineCommand } from "citty";
import { runChecks } from "../../doctor/checks.ts";
import { colorEnabled, paint, type Style } from "../terminal.ts";
import { configArg, formatTable, globalArgs, jsonArg, socketArg } from "../_shared.ts";

const STATUS_STYLE: Record<string, Style> = { OK: "green", WARN: "yellow", FAIL: "red" };

export default defineCommand({
  meta: { name: "doctor", description: "Check Docker, the agent and its socket, tmpfs, swap, memory locking, core dumps, the config, the file provider's permissions and which delivery modes work here; exit 1 if any check fails" },
  args: { ...configArg, ...socketArg, ...jsonArg, ...globalArgs },
  async run({ args }) {
    const results = await runChecks({ env: process.env, configFlag: args.config, socketFlag: args.socket });
    const failed = results.some((r) => r.status === "fail");
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ok: !failed, checks: results })}\n`);
    } else {
      const rows = results.map((r) => [r.check, r.status.toUpperCase(), r.detail]);
      const color = colorEnabled(process.stdout);
      const decorate = (column: number, text: string) => (column === 1 ? paint(text, STATUS_STYLE[text.trim()] ?? "bold", color) : text);
      process.stdout.write(`${formatTable(["CHECK", "STATUS", "DETAIL"], rows, { decorate })}\n`);
    }
    if (failed) process.exitCode = 1;
  },
});
