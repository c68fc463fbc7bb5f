import { defineCommand } from "citty";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
import { age, agentClientArgs, formatTable } from "../_shared.ts";

export default defineCommand({
  meta: { name: "status", description: "Show the agent, its providers and whether each secret is current" },
  args: { ...agentClientArgs },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const status = await callRoute(socket, "status");
    if (args.json) return void process.stdout.write(`${JSON.stringify(status)}\n`);
    const a = status.agent;
    const docker = a.docker ? `${a.docker.host} (API ${a.docker.api}${a.docker.connected ? "" : ", disconnected"})` : "not connected";
    process.stdout.write(`agent ${a.version}  pid ${a.pid}  up since ${a.startedAt}  docker ${docker}  cache ${a.cache ? "on" : "off"}\n\n`);
    const providerRows = status.providers.map((p) => [
      p.name,
      p.type,
      p.healthy ? "healthy" : p.state === "idle" && !p.lastError ? "idle" : "unhealthy",
      age(p.lastPoll?.at),
      String(p.restarts),
      p.lastError ?? "",
    ]);
    process.stdout.write(`${formatTable(["PROVIDER", "TYPE", "HEALTH", "LAST POLL", "RESTARTS", "ERROR"], providerRows)}\n\n`);
    const secretRows = status.secrets.map((s) => [
      s.name,
      s.provider,
      s.version ?? "-",
      s.state,
      age(s.lastPollAt),
      age(s.lastChangeAt),
      s.error ?? "",
    ]);
    process.stdout.write(`${formatTable(["SECRET", "PROVIDER", "VERSION", "STATE", "POLLED", "CHANGED", "ERROR"], secretRows)}\n`);
    if (status.leases?.length) {
      const leaseRows = status.leases.map((l) => [l.secret, l.consumer.slice(0, 12), l.state + (l.replaceWanted ? " (replacing)" : ""), l.expiresAt, l.lastRenewalAt ?? "-", String(l.failures)]);
      process.stdout.write(`
${formatTable(["LEASED SECRET", "CONSUMER", "STATE", "EXPIRES", "LAST RENEWAL", "FAILURES"], leaseRows)}
`);
    }
    if (status.secrets.some((s) => s.stale)) process.exitCode = 1;
  },
});
