/**
 * Scale: 50 labelled containers share one secret (DSO_SCALE_FLEET=N for another count); it
 * changes once at the provider. Every
 * container must get the new value; the wave must fetch the value once (one provider call per
 * wave, never one per container). Printed: p50/p95/max from the change to the new content seen
 * inside, the agent's RSS and CPU during the wave, the provider calls. bench/scale.ts runs the same
 * with 1,000 containers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { cpuSeconds, metricSum, percentile, providerPids, rssKiB, scrapeMetrics } from "../support/agent-probe.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { removeFleet, startFleet, waitForValue, type FleetMember } from "../support/fleet.ts";
import { ensureTestImages } from "../support/test-images.ts";

const FLEET = Number(process.env.DSO_SCALE_FLEET ?? 50);
const LABELS = { "dso.reloader": "true", "dso.secrets": "shared", "dso.update.strategy": "none" };

let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let fleet: FleetMember[] = [];

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-scale-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "shared"), "scale-v0");
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config: { path: ${join(dir, "secrets")} }\nagent:\n  metrics: { enabled: true }\n  watch: { polling_interval: 1s }\n`,
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
}, 60_000);

afterAll(async () => {
  await agent?.stop("SIGKILL");
  await removeFleet(docker, fleet);
  await rm(dir, { recursive: true, force: true });
}, 300_000);

describe(`${FLEET} labelled containers, one shared secret`, () => {
  test("one change reaches every container with one fetch per wave", async () => {
    const t0 = performance.now();
    fleet = await startFleet(docker, FLEET, { prefix: "scale", labels: LABELS });
    // Starting the fleet is dockerd's time (~0.4 s a container here, the agent delivering as they come); the deliveries get 60 s after it.
    const first = await waitForValue(fleet, "/run/secrets/shared", "scale-v0", { startedAt: t0, timeoutMs: performance.now() - t0 + 60_000 });
    expect(first.missing).toBe(0);
    const startedS = (performance.now() - t0) / 1000;

    const before = await scrapeMetrics(agent);
    const cpuBefore = cpuSeconds(agent.proc.pid);
    let rssMax = rssKiB(agent.proc.pid);
    const rssIdle = rssMax;
    let providerRssMax = 0;
    const changedAt = performance.now();
    await writeFile(join(dir, "secrets", "shared"), "scale-v1");
    const wave = await waitForValue(fleet, "/run/secrets/shared", "scale-v1", {
      startedAt: changedAt,
      timeoutMs: 30_000,
      onTick: () => {
        rssMax = Math.max(rssMax, rssKiB(agent.proc.pid));
        for (const pid of providerPids(agent.proc.pid)) providerRssMax = Math.max(providerRssMax, rssKiB(pid));
      },
    });
    const waveS = (performance.now() - changedAt) / 1000;
    const cpu = cpuSeconds(agent.proc.pid) - cpuBefore;
    await Bun.sleep(1500); // the waves have ended; late calls would show here
    const after = await scrapeMetrics(agent);
    const delta = (name: string, ...labels: string[]) => metricSum(after, name, ...labels) - metricSum(before, name, ...labels);
    const fetchCalls = delta("dso_provider_calls_total", 'operation="fetch"');
    const polls = delta("dso_provider_polls_total");
    const deliveries = delta("dso_deliveries_total", 'outcome="ok"');

    console.log(
      `${FLEET} containers (started and first delivery in ${startedS.toFixed(1)} s): change → new content inside ` +
        `p50 ${percentile(wave.latencies, 50).toFixed(0)} ms, p95 ${percentile(wave.latencies, 95).toFixed(0)} ms, max ${Math.max(...wave.latencies).toFixed(0)} ms (1 s polling); ` +
        `agent RSS ${(rssIdle / 1024).toFixed(1)} → max ${(rssMax / 1024).toFixed(1)} MiB, CPU ${cpu.toFixed(2)} s over ${waveS.toFixed(1)} s; ` +
        `provider RSS max ${(providerRssMax / 1024).toFixed(1)} MiB; fetch calls ${fetchCalls}, polls ${polls}, deliveries ${deliveries}`,
    );
    expect(wave.missing).toBe(0);
    expect(wave.latencies).toHaveLength(FLEET);
    expect(deliveries).toBeGreaterThanOrEqual(FLEET);
    // One fetch for the wave; a wave split by the debounce may fetch twice, never once per container.
    expect(fetchCalls).toBeGreaterThanOrEqual(1);
    expect(fetchCalls).toBeLessThanOrEqual(2);
    expect(agent.proc.exitCode).toBeNull();
  }, 400_000);
});
