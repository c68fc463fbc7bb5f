/**
 * Faults of a provider that stops answering, with the compiled agent: a provider frozen with
 * SIGSTOP (its calls time out after `providers.*.timeout`, the agent kills it and starts another
 * after the backoff; `dso status` answers throughout), one frozen shorter than the timeout
 * (SIGCONT: no restart), and an outage longer than the staleness budget — first the file
 * provider's directory gone (in-band errors), then every provider process frozen as it starts —
 * during which containers keep their files, status and metrics say stale, restarts stay bounded
 * by the backoff, and after which the containers converge on the value changed meanwhile.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { metricSum, providerPids, readInside, scrapeMetrics } from "../support/agent-probe.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { startFleet, removeFleet, type FleetMember } from "../support/fleet.ts";
import { ensureTestImages } from "../support/test-images.ts";

const TIMEOUT_MS = 1000;
const BACKOFF_MS = 200;

let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let fleet: FleetMember[] = [];

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-fault-outage-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "token"), "outage-v0");
  await writeFile(
    join(dir, "dso.yaml"),
    [
      "providers:",
      "  local:",
      "    type: file",
      "    allow_undeclared: true",
      `    config: { path: ${join(dir, "secrets")} }`,
      `    retry: { attempts: 3, backoff: ${BACKOFF_MS}ms }`,
      `    timeout: ${TIMEOUT_MS}ms`,
      "agent:",
      "  metrics: { enabled: true }",
      "  watch: { polling_interval: 1s }",
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
  fleet = await startFleet(docker, 2, { prefix: "fault-outage", labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "none" } });
  await eventually("first delivery", async () => (allHave("outage-v0") ? true : undefined));
  // The first delivery came through a fetch process; wait for the poller to have answered.
  await eventually("token polled", async () =>
    (await pollerPid()) && [...(await scrapeMetrics(agent)).keys()].some((k) => k.startsWith("dso_secret_staleness_seconds") && k.includes('secret="token"')) ? true : undefined,
  );
}, 60_000);

afterAll(async () => {
  for (const pid of agent ? providerPids(agent.proc.pid) : []) process.kill(pid, "SIGCONT");
  await agent?.stop("SIGKILL");
  await removeFleet(docker, fleet);
  await rm(dir, { recursive: true, force: true });
});

const allHave = (value: string) => fleet.every((m) => readInside(m.pid, "/run/secrets/token") === value);

/**
 * GET /v1/status on the agent socket (what `dso status` asks) every 100 ms while `during` runs;
 * the worst answer time. Timed on the socket: a CLI process's own start-up is not the agent's.
 */
async function statusWhile<T>(during: () => Promise<T>): Promise<{ result: T; worstMs: number; failures: number }> {
  let done = false;
  let worstMs = 0;
  let failures = 0;
  const probe = (async () => {
    while (!done) {
      const t = performance.now();
      const r = await fetch("http://dso/v1/status", { unix: agent.socket, signal: AbortSignal.timeout(10_000) } as RequestInit).catch(() => undefined);
      worstMs = Math.max(worstMs, performance.now() - t);
      if (r?.status !== 200) failures++;
      await r?.arrayBuffer();
      await Bun.sleep(100);
    }
  })();
  try {
    const result = await during();
    return { result, worstMs, failures };
  } finally {
    done = true;
    await probe;
  }
}

interface StatusJson {
  providers: Array<{ name: string; healthy: boolean; pid?: number; restarts: number; lastError?: string }>;
  secrets: Array<{ name: string; stale: boolean; state: string }>;
}
const status = async () => JSON.parse((await agent.cli(["status", "--json"])).stdout) as StatusJson;
const restarts = async () => metricSum(await scrapeMetrics(agent), "dso_provider_restarts_total");
/**
 * The long-lived (polling) provider process, from `dso status`: values are fetched by short-lived
 * processes of their own, so a child of the agent named "provider" may be one of those.
 */
const pollerPid = async () => (JSON.parse((await agent.cli(["status", "--json"])).stdout) as { providers: Array<{ pid?: number }> }).providers[0]?.pid;

describe("a provider that stops answering", () => {
  test("SIGSTOP: calls time out, the agent kills it and starts another; status answers throughout", async () => {
    const frozen = await pollerPid();
    expect(frozen).toBeDefined();
    const before = await restarts();
    const { worstMs, failures } = await statusWhile(async () => {
      process.kill(frozen!, "SIGSTOP");
      await agent.waitForLog(new RegExp(`timed out after ${TIMEOUT_MS} ms`), 10_000);
      await eventually("the frozen provider is killed", async () => (existsSync(`/proc/${frozen}`) ? undefined : true), 5_000);
      await eventually("another provider process", async () => ((await pollerPid()) && (await pollerPid()) !== frozen ? true : undefined), 5_000);
    });
    await writeFile(join(dir, "secrets", "token"), "outage-v1");
    await eventually("the change after the hang", async () => (allHave("outage-v1") ? true : undefined));
    const counted = (await restarts()) - before;
    console.log(`provider SIGSTOP: call timed out after ${TIMEOUT_MS} ms, provider killed and restarted (restarts counted ${counted}); /v1/status worst ${worstMs.toFixed(0)} ms, ${failures} failed`);
    expect(failures).toBe(0);
    expect(worstMs).toBeLessThan(1000);
    expect(counted).toBe(1);
    expect((await agent.cli(["status"])).code).toBe(0);
  }, 60_000);

  test("SIGSTOP shorter than the timeout, then SIGCONT: answered late, no restart", async () => {
    const pid = await pollerPid();
    const before = await restarts();
    process.kill(pid!, "SIGSTOP");
    await Bun.sleep(TIMEOUT_MS / 2);
    process.kill(pid!, "SIGCONT");
    await writeFile(join(dir, "secrets", "token"), "outage-v2");
    await eventually("the change after SIGCONT", async () => (allHave("outage-v2") ? true : undefined));
    expect(await pollerPid()).toBe(pid!);
    expect((await restarts()) - before).toBe(0);
  }, 30_000);
});

describe("an outage longer than the staleness budget", () => {
  test("files stay, status and metrics say stale, no restart storm, recovery converges", async () => {
    const secrets = join(dir, "secrets");
    const restartsBefore = await restarts();
    // In-band: the provider answers, every secret fails (its directory is gone).
    await rename(secrets, `${secrets}-away`);
    const inBand = await statusWhile(async () =>
      eventually("stale in dso status", async () => {
        const s = (await status()).secrets.find((x) => x.name === "token");
        return s?.stale ? s : undefined;
      }),
    );
    expect(inBand.result.state).toMatch(/^stale: provider local unavailable since \d\d:\d\d$/);
    await Bun.sleep(2500);
    const staleness = metricSum(await scrapeMetrics(agent), "dso_secret_staleness_seconds", 'secret="token"');
    expect(staleness).toBeGreaterThanOrEqual(2);
    expect(allHave("outage-v2")).toBe(true);
    const inBandRestarts = (await restarts()) - restartsBefore;
    expect(inBandRestarts).toBe(0);

    // Hanging: every provider process is frozen as soon as it exists, for OUTAGE_MS.
    await rename(`${secrets}-away`, secrets);
    await writeFile(join(secrets, "token"), "outage-v3");
    const OUTAGE_MS = 6000;
    const spawned = new Set<number>();
    const hang = await statusWhile(async () => {
      const until = Date.now() + OUTAGE_MS;
      while (Date.now() < until) {
        for (const pid of providerPids(agent.proc.pid)) {
          if (spawned.has(pid)) continue;
          process.kill(pid, "SIGSTOP");
          spawned.add(pid);
        }
        await Bun.sleep(5);
      }
    });
    const stale = (await status()).secrets.find((x) => x.name === "token");
    const hangRestarts = (await restarts()) - restartsBefore;
    expect(stale?.stale).toBe(true);
    expect(allHave("outage-v2")).toBe(true); // the old files, whole, through the outage
    for (const pid of providerPids(agent.proc.pid)) process.kill(pid, "SIGCONT");

    const recoveredAt = performance.now();
    await eventually("converged on the value changed during the outage", async () => (allHave("outage-v3") ? true : undefined), 20_000);
    const recoverMs = performance.now() - recoveredAt;
    await eventually("not stale any more", async () => ((await status()).secrets.find((x) => x.name === "token")?.stale === false ? true : undefined));
    const stalenessAfter = metricSum(await scrapeMetrics(agent), "dso_secret_staleness_seconds", 'secret="token"');
    console.log(
      `provider outage: directory gone → stale after one poll, staleness metric ${staleness.toFixed(1)} s, 0 restarts; ` +
        `${OUTAGE_MS / 1000} s of frozen providers (${TIMEOUT_MS} ms timeout, ${BACKOFF_MS} ms backoff doubling) → ${spawned.size} processes started, ${hangRestarts} restarts; ` +
        `/v1/status worst ${Math.max(inBand.worstMs, hang.worstMs).toFixed(0)} ms; converged ${recoverMs.toFixed(0)} ms after the outage ended; staleness then ${stalenessAfter.toFixed(1)} s`,
    );
    expect(inBand.failures + hang.failures).toBe(0);
    expect(Math.max(inBand.worstMs, hang.worstMs)).toBeLessThan(1000);
    // Backoff, not a storm: each attempt costs the call timeout (or the 10 s start timeout for a
    // process frozen before its hello) plus a doubling wait.
    expect(spawned.size).toBeGreaterThanOrEqual(2);
    expect(spawned.size).toBeLessThanOrEqual(6);
    expect(hangRestarts).toBeLessThanOrEqual(6);
    expect(stalenessAfter).toBeLessThan(3);
  }, 90_000);
});
