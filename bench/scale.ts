#!/usr/bin/env bun
/**
 * 1,000 labelled containers on one daemon (the Go DSO's documented limit), with the compiled agent
 * and the file provider against a private dockerd (run as root: bun bench/scale.ts [containers]
 * [waves]). Prints: time to start the fleet and deliver to it; per rotation wave of the one shared
 * secret, change → new content seen inside p50/p95/max (read from the host through
 * /proc/<pid>/root), agent RSS max and CPU, provider fetch calls; then a reconcile pass
 * (`dso sync`) over the up-to-date fleet: wall time and the Docker API calls the agent made,
 * counted by a proxy on its Docker socket; and the agent's idle RSS with the fleet. With
 * `--templates` (bun bench/scale.ts N W --templates), after the plain waves the secret is declared
 * with two outputs (a DSN template, an env format) by a reload, and the same waves run again over
 * the same fleet, timed on the rendered file: the template column of docs/performance.md.
 *
 * Starting 1,000 containers takes dockerd 10–30 minutes on a 2-core machine. With
 * DSO_TEST_DOCKER_HOST=unix://… the bench attaches to a daemon that already runs part of the fleet
 * (containers named bscale-*), starts only the rest, and leaves the fleet running when it ends.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { countingProxy, cpuSeconds, metricSum, percentile, providerPids, rssKiB, scrapeMetrics } from "../test/support/agent-probe.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { removeFleet, startFleet, waitForValue, type FleetMember } from "../test/support/fleet.ts";
import { ensureTestImages } from "../test/support/test-images.ts";

const args = process.argv.slice(2).filter((a) => a !== "--templates");
const FLEET = Number(args[0] ?? 1000);
const WAVES = Number(args[1] ?? 5);
/** `--templates`: after the plain waves, the same waves with the secret rendered through templates. */
const TEMPLATES = process.argv.includes("--templates");
const RSS_GOAL_MIB = 150;
const LABELS = { "dso.reloader": "true", "dso.secrets": "shared", "dso.update.strategy": "none" };
const mib = (kib: number) => (kib / 1024).toFixed(1);

const { docker, host } = await ensureDocker();
await ensureTestImages(docker);
const dir = await mkdtemp("/tmp/dso-bench-scale-");
await mkdir(join(dir, "secrets"));
await writeFile(join(dir, "secrets", "shared"), "scale-v0");
const CONFIG = `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config: { path: ${join(dir, "secrets")} }\nagent:\n  metrics: { enabled: true }\n  watch: { polling_interval: 1s }\n`;
const TEMPLATED_SECRET = `secrets:\n  - name: shared\n    provider: local\n    templates:\n      - file: dsn\n        template: "postgres://app:{{ .value | urlquery }}@db/app"\n      - file: shared.env\n        format: env\n`;
const dsnOf = (value: string) => `postgres://app:${encodeURIComponent(value)}@db/app`;
await writeFile(join(dir, "dso.yaml"), CONFIG);
const proxy = countingProxy(host.replace(/^unix:\/\//, ""), join(dir, "counted-docker.sock"));
await proxy.ready;
const agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: proxy.host });
let fleet: FleetMember[] = [];
try {
  const t0 = performance.now();
  const existing = (await docker.listContainers({ filters: { name: ["bscale-"], label: ["dso.secrets=shared"], status: ["running"] } })).map((c) => ({ id: c.Id }));
  const kept: FleetMember[] = [];
  for (const c of existing.slice(0, FLEET)) kept.push({ id: c.id, pid: (await docker.getContainer(c.id).inspect()).State.Pid });
  fleet = [...kept, ...(await startFleet(docker, FLEET - kept.length, { prefix: `bscale-${Date.now()}`, labels: LABELS, concurrency: 4 }))];
  const createdS = (performance.now() - t0) / 1000;
  if (kept.length) console.log(`\n${kept.length} containers of the fleet were running already (attached daemon)`);
  // The first deliveries get 300 s after the last start (starting the fleet is dockerd's time).
  const first = await waitForValue(fleet, "/run/secrets/shared", "scale-v0", { startedAt: t0, timeoutMs: performance.now() - t0 + 300_000 });
  if (first.missing) throw new Error(`${first.missing} containers never got their first delivery`);
  console.log(`\n${FLEET} containers created and started in ${createdS.toFixed(0)} s (4 at a time); all had their file ${((performance.now() - t0) / 1000 - createdS).toFixed(1)} s after the last start\n`);
  await Bun.sleep(3000);
  const idleRss = rssKiB(agent.proc.pid);

  let rssPeak = idleRss;
  let waveNo = 0;
  /** WAVES rotation waves of the shared secret; each container's `file` must come to read `expect(value)`. */
  const runWaves = async (title: string, file: string, expect: (value: string) => string) => {
    console.log(`${title}, ${FLEET} containers:\n`);
    console.log("| wave | p50 ms | p95 ms | max ms | agent RSS max MiB | agent JS heap after MiB | agent CPU s | provider fetch calls | Docker API calls |\n|---|---|---|---|---|---|---|---|---|");
    const all: number[] = [];
    for (let w = 1; w <= WAVES; w++) {
      const value = `scale-v${++waveNo}`;
      const before = await scrapeMetrics(agent);
      const cpu0 = cpuSeconds(agent.proc.pid);
      let rssMax = rssKiB(agent.proc.pid);
      proxy.reset();
      const changedAt = performance.now();
      await writeFile(join(dir, "secrets", "shared"), value);
      const wave = await waitForValue(fleet, file, expect(value), {
        startedAt: changedAt,
        timeoutMs: 120_000,
        onTick: () => void (rssMax = Math.max(rssMax, rssKiB(agent.proc.pid))),
      });
      if (wave.missing) throw new Error(`wave ${w}: ${wave.missing} containers never saw the new value`);
      const cpu = cpuSeconds(agent.proc.pid) - cpu0;
      await Bun.sleep(1500);
      const after = await scrapeMetrics(agent);
      const fetches = metricSum(after, "dso_provider_calls_total", 'operation="fetch"') - metricSum(before, "dso_provider_calls_total", 'operation="fetch"');
      all.push(...wave.latencies);
      rssPeak = Math.max(rssPeak, rssMax);
      console.log(
        `| ${w} | ${percentile(wave.latencies, 50).toFixed(0)} | ${percentile(wave.latencies, 95).toFixed(0)} | ${Math.max(...wave.latencies).toFixed(0)} | ${mib(rssMax)} | ${(metricSum(after, "nodejs_heap_size_used_bytes") / 1048576).toFixed(1)} | ${cpu.toFixed(2)} | ${fetches} | ${proxy.total()} |`,
      );
      await Bun.sleep(1000);
    }
    console.log(`| all ${WAVES} | ${percentile(all, 50).toFixed(0)} | ${percentile(all, 95).toFixed(0)} | ${Math.max(...all).toFixed(0)} | ${mib(rssPeak)} | | | | |`);
  };
  await runWaves("Rotation waves of the one shared secret (1 s polling)", "/run/secrets/shared", (value) => value);

  if (TEMPLATES) {
    // The same fleet and secret, now declared with two outputs (a DSN template and an env format): reload, then the same waves.
    await writeFile(join(dir, "dso.yaml"), `${CONFIG}${TEMPLATED_SECRET}`);
    const reloadedAt = performance.now();
    agent.proc.kill("SIGHUP");
    const current = `scale-v${waveNo}`;
    const rendered = await waitForValue(fleet, "/run/secrets/dsn", dsnOf(current), { startedAt: reloadedAt, timeoutMs: 300_000 });
    if (rendered.missing) throw new Error(`${rendered.missing} containers never got the rendered outputs after the reload`);
    console.log(`\nTemplates added by a reload: every container had its rendered outputs ${(Math.max(...rendered.latencies) / 1000).toFixed(1)} s after SIGHUP\n`);
    await Bun.sleep(3000);
    await runWaves("The same waves with templates (each container: a DSN template and a `value=…` env file rendered from the secret)", "/run/secrets/dsn", dsnOf);
  }

  const passes: Array<{ ms: number; calls: number; counts: Map<string, number> }> = [];
  for (let i = 0; i < 3; i++) {
    proxy.reset();
    const t = performance.now();
    const sync = await agent.cli(["sync", "--json"]);
    if (sync.code !== 0) throw new Error(`dso sync failed: ${sync.stderr}`);
    passes.push({ ms: performance.now() - t, calls: proxy.total(), counts: proxy.counts() });
  }
  const sorted = [...passes].sort((a, b) => a.ms - b.ms);
  console.log(
    `\nReconcile pass (dso sync) over ${FLEET} up-to-date containers: ${sorted.map((p) => p.ms.toFixed(0)).join(", ")} ms wall (3 passes), ${sorted[0]!.calls} Docker API calls per pass:`,
  );
  for (const [k, n] of [...sorted[0]!.counts].sort()) console.log(`  ${n} × ${k}`);
  const providerRss = providerPids(agent.proc.pid).map((pid) => mib(rssKiB(pid)));
  const endRss = rssKiB(agent.proc.pid);
  console.log(
    `\nAgent RSS: idle with ${FLEET} containers ${mib(idleRss)} MiB, peak in the waves ${mib(rssPeak)} MiB, after ${mib(endRss)} MiB (goal < ${RSS_GOAL_MIB} MiB: ${rssPeak / 1024 < RSS_GOAL_MIB ? "met" : "MISSED"}); provider process ${providerRss.join(", ")} MiB\n`,
  );
} finally {
  await agent.stop("SIGTERM");
  if (!process.env.DSO_TEST_DOCKER_HOST) await removeFleet(docker, fleet);
  proxy.stop();
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
