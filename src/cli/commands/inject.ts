import { defineCommand } from "citty";
import { loadHostKey } from "../../agent/host-key.ts";
import { buildReconciler, buildSecretsRuntime, providerProcess } from "../../agent/runtime.ts";
import { findConfigPath, loadConfig } from "../../config/index.ts";
import { connectDocker } from "../../docker/client.ts";
import { DsoError } from "../../errors.ts";
import { log } from "../../log/logger.ts";
import type { InjectReport } from "../../api/contract.ts";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
import { agentClientArgs, formatTable } from "../_shared.ts";

/**
 * Without a running agent: the same runtime as the agent's, built by this process for one delivery.
 * `socket` is the one the agent would serve (--socket, $DSO_SOCKET, agent.socket): the DSO volume
 * driver's name comes from it, so both pick the same mode for a container on a DSO volume.
 */
async function injectDirectly(configFlag: string | undefined, socket: string, container: string, secrets: string[]): Promise<InjectReport> {
  const path = findConfigPath({ flag: configFlag, env: process.env });
  const { config } = await loadConfig(path, process.env);
  const { docker } = await connectDocker({ env: process.env });
  // The agent's host key when readable, so the agent later sees these files as current; else a
  // key of this run only (the agent then delivers these files once more, without a strategy run).
  const { key, path: keyPath } = await loadHostKey(config.agent.volumesRoot, false);
  if (!keyPath) log.info("no agent host key readable: this run keys fingerprints and version markers with a one-off key", { root: config.agent.volumesRoot });
  const providers = new Map(Object.entries(config.providers).map(([name, spec]) => [name, providerProcess(name, spec, process.env, key)]));
  const secretsRuntime = buildSecretsRuntime({ config, key, provider: (name) => providers.get(name), log: log.withTag("inject") });
  const { reconciler } = await buildReconciler({ docker, secrets: secretsRuntime, config: () => config, socketPath: socket, log: log.withTag("inject") });
  try {
    return await reconciler.inject(container, secrets);
  } finally {
    await Promise.all([...providers.values()].map((p) => p.stop()));
  }
}

export default defineCommand({
  meta: { name: "inject", description: "Deliver a container's secrets now (through the agent if it runs, else directly); prints names, versions, modes" },
  args: {
    container: { type: "positional", required: true, description: "Container name or id" },
    secret: { type: "string", description: "Also deliver this secret (repeatable)", valueHint: "name" },
    ...agentClientArgs,
  },
  async run({ args, rawArgs }) {
    const secrets = rawArgs.flatMap((a, i) => (a === "--secret" ? [rawArgs[i + 1] ?? ""] : a.startsWith("--secret=") ? [a.slice(9)] : []));
    let report: InjectReport;
    let via = "agent";
    const socket = await resolveSocketPath(args);
    try {
      report = await callRoute(socket, "inject", { container: args.container, ...(secrets.length ? { secrets } : {}) });
    } catch (error) {
      if (!(error instanceof DsoError) || error.code !== "AGENT_UNREACHABLE") throw error;
      via = "direct";
      report = await injectDirectly(args.config, socket, args.container, secrets);
    }
    if (args.json) return void process.stdout.write(`${JSON.stringify({ via, ...report })}\n`);
    const rows = report.secrets.map((s) => [s.name, s.version ?? "-", s.delivered ? "yes" : "no"]);
    process.stdout.write(`${report.name} (${report.container.slice(0, 12)}), via ${via}\n`);
    process.stdout.write(`${formatTable(["SECRET", "VERSION", "DELIVERED"], rows)}\n`);
    for (const d of report.deliveries) process.stdout.write(`  ${d.path}: ${d.files.join(", ")} (mode ${d.mode})\n`);
    if (report.error) {
      process.stderr.write(`dso: ${report.error}\n`);
      process.exitCode = 1;
    }
  },
});
