import { defineCommand } from "citty";
import type { ContainerState } from "../../reloader/reloader.ts";
import { callAgent, resolveSocketPath } from "../agent-client.ts";
import { age, agentClientArgs, formatTable } from "../_shared.ts";

export default defineCommand({
  meta: { name: "ls", description: "List containers with DSO secrets: secrets, versions, delivery mode, strategy (never values)" },
  args: { ...agentClientArgs },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const { containers } = await callAgent<{ containers: ContainerState[] }>(socket, "GET", "/v1/containers");
    if (args.json) return void process.stdout.write(`${JSON.stringify({ containers })}\n`);
    const rows = containers.map((c) => [
      c.name,
      c.id.slice(0, 12),
      c.secrets.map((s) => (c.versions[s] ? `${s}@${c.versions[s]!.slice(0, 12)}` : s)).join(","),
      [...new Set(c.deliveries.map((d) => d.mode))].join(",") || "-",
      c.deliveries.map((d) => d.path).join(",") || "-",
      c.strategy,
      age(c.deliveries.map((d) => d.at).sort().at(-1)),
      c.error ?? "",
    ]);
    process.stdout.write(`${formatTable(["CONTAINER", "ID", "SECRETS", "MODE", "PATH", "STRATEGY", "DELIVERED", "ERROR"], rows)}\n`);
  },
});
