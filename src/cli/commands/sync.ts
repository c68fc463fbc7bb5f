import { defineCommand } from "citty";
import type { ActionReport } from "../../api/contract.ts";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
import { withProgress } from "../progress.ts";
import { agentClientArgs, formatTable } from "../_shared.ts";

export function printReports(results: ActionReport[], json: boolean | undefined): void {
  if (json) return void process.stdout.write(`${JSON.stringify({ results })}\n`);
  if (results.length === 0) return void process.stdout.write("nothing to do\n");
  const rows = results.map((r) => [r.name, r.container.startsWith("service ") ? r.container : r.container.slice(0, 12), r.delivered.join(",") || "-", r.action ?? "-", r.error ?? "ok"]);
  process.stdout.write(`${formatTable(["CONTAINER", "ID", "DELIVERED", "ACTION", "RESULT"], rows)}\n`);
  if (results.some((r) => r.error)) process.exitCode = 1;
}

export default defineCommand({
  meta: { name: "sync", description: "Deliver current secrets now, to one container or every container missing them" },
  args: {
    container: { type: "positional", required: false, description: "Container name or id (default: all)" },
    ...agentClientArgs,
  },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const body = args.container ? { container: args.container } : {};
    const what = args.container ? `reconciling ${args.container}` : "reconciling every container";
    const { results } = await withProgress(what, callRoute(socket, "sync", body));
    printReports(results, args.json);
  },
});
