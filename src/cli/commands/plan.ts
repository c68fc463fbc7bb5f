import { defineCommand } from "citty";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
import { agentClientArgs, formatTable, secretPositional } from "../_shared.ts";

export default defineCommand({
  meta: { name: "plan", description: "Show what a change of a secret would do to which containers (nothing is executed)" },
  args: {
    ...secretPositional,
    ...agentClientArgs,
  },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const plan = await callRoute(socket, "plan", { secret: args.secret });
    if (args.json) return void process.stdout.write(`${JSON.stringify(plan)}\n`);
    const outputs = (plan.outputs ?? []).map((o) => `${o.name} of ${o.secret} ← ${o.sources.join(", ")} (${o.kind})`);
    if (outputs.length) process.stdout.write(`outputs re-rendered: ${outputs.join("; ")}\n`);
    if (plan.containers.length === 0) {
      return void process.stdout.write(`secret ${plan.secret} (provider ${plan.provider}) is used by no running container\n`);
    }
    const rows = plan.containers.map((c) => [
      c.name,
      c.id.slice(0, 12),
      c.paths.map((p) => `${p.path} (${p.mode})`).join(",") || "-",
      c.strategy,
      c.action,
    ]);
    process.stdout.write(`a change of ${plan.secret} (provider ${plan.provider}) would:\n`);
    process.stdout.write(`${formatTable(["CONTAINER", "ID", "FILES", "STRATEGY", "ACTION"], rows)}\n`);
  },
});
