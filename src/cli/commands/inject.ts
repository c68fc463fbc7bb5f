import { defineCommand } from "citty";
import { SecretStore } from "../../agent/secret-store.ts";
import { findConfigPath, loadConfig } from "../../config/index.ts";
import { connectDocker } from "../../docker/client.ts";
import { DsoError } from "../../errors.ts";
import { log } from "../../log/logger.ts";
import { Reloader, type InjectReport } from "../../reloader/reloader.ts";
import { ProviderProcess } from "../../rpc/supervisor.ts";
import { callAgent, resolveSocketPath } from "../agent-client.ts";
import { agentClientArgs, formatTable } from "../_shared.ts";

/** Without a running agent: the same delivery, done by this process with its own providers. */
async function injectDirectly(configFlag: string | undefined, container: string, secrets: string[]): Promise<InjectReport> {
  const path = findConfigPath({ flag: configFlag, env: process.env });
  const { config } = await loadConfig(path, process.env);
  const { docker } = await connectDocker({ env: process.env });
  const { deliverToContainer } = await import("../../delivery/deliver.ts");
  const providers = new Map(
    Object.entries(config.providers).map(([name, spec]) => [
      name,
      new ProviderProcess({
        configure: { name, type: spec.type, ...(spec.region ? { region: spec.region } : {}), auth: { ...(spec.auth.method ? { method: spec.auth.method } : {}), params: spec.auth.params }, config: spec.config },
        env: process.env,
      }),
    ]),
  );
  const store = new SecretStore(false);
  store.setSpecs(config.secrets);
  const reloader = new Reloader({
    docker,
    store,
    provider: (name) => providers.get(name),
    deliver: (id, target, files, signal) => deliverToContainer(docker, id, target, files, { signal }),
    log: log.withTag("inject"),
    config: () => config,
  });
  try {
    return await reloader.inject(container, secrets);
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
    try {
      const socket = await resolveSocketPath(args);
      report = await callAgent<InjectReport>(socket, "POST", "/v1/inject", { container: args.container, ...(secrets.length ? { secrets } : {}) });
    } catch (error) {
      if (!(error instanceof DsoError) || error.code !== "AGENT_UNREACHABLE") throw error;
      via = "direct";
      report = await injectDirectly(args.config, args.container, secrets);
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
