import { defineCommand } from "citty";
import type { ContainerView } from "../../api/contract.ts";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
import { age, agentClientArgs, formatTable } from "../_shared.ts";

/** The strategy column: the name, and how its last run went. */
function strategyCell(c: ContainerView): string {
  const run = c.lastStrategy;
  if (!run) return c.strategy;
  return `${c.strategy} (${run.outcome === "ok" ? (run.action ?? "ran") : "failed"} ${age(run.at)})`;
}

export default defineCommand({
  meta: {
    name: "ls",
    description: "List containers with DSO secrets: per secret the version wanted and the version in the container, mode, strategy (never values)",
  },
  args: { ...agentClientArgs },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const { containers } = await callRoute(socket, "containers");
    if (args.json) return void process.stdout.write(`${JSON.stringify({ containers })}\n`);
    const rows = containers.flatMap((c) =>
      (c.status.length ? c.status : [{ name: "-", path: "-", state: c.error ? `error: ${c.error}` : "-" }]).map((s) => [
        c.name,
        s.name,
        "mode" in s && s.mode ? s.mode : "-",
        "wanted" in s && s.wanted ? s.wanted : "-",
        "actual" in s && s.actual ? s.actual : "-",
        "lease" in s && s.lease ? `${s.state}; lease expires ${s.lease.expiresAt.slice(11, 19)}${s.lease.lastRenewalAt ? `, renewed ${s.lease.lastRenewalAt.slice(11, 19)}` : ""}` : s.state,
        strategyCell(c),
      ]),
    );
    process.stdout.write(`${formatTable(["CONTAINER", "SECRET", "MODE", "WANTED", "ACTUAL", "STATE", "STRATEGY"], rows)}\n`);
    // Templates and formats: which file (or variable) each secret feeds, from which secrets.
    for (const c of containers) {
      const outputs = c.status.flatMap((s) => (s.outputs ?? []).map((o) => `${o.name} ← ${o.sources.join(", ")} (${o.kind})`));
      if (outputs.length) process.stdout.write(`${c.name} outputs: ${[...new Set(outputs)].join("; ")}\n`);
    }
    const errors = containers.filter((c) => c.error);
    for (const c of errors) process.stdout.write(`${c.name}: ${c.error}\n`);
  },
});
