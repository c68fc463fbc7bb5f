#!/usr/bin/env bun
/**
 * Rotation propagation and agent memory, with the compiled agent and the file provider against a
 * private dockerd (run as root: bun bench/rotation.ts [changes]).
 *
 * The bench reads each container's /run/secrets/token from the host through /proc/<pid>/root
 * (the container's own mount namespace) every 10 ms, which costs the daemon nothing. Latency =
 * first moment the new content is visible there minus the moment the file changed at the
 * provider, over N changes at 1 s polling, for 1 and for 50 labelled containers; then change →
 * strategy done for 10 `signal` containers (each writes the value it sees at SIGHUP into its
 * /tmp/hup); then the agent's RSS (and its provider process's) idle with 100 labelled containers;
 * then a reconcile pass (`dso sync`) over 200 up-to-date containers: wall time and the Docker API
 * calls the agent made, counted by a proxy on its Docker socket. Baseline in the same run: a
 * `docker cp` loop (what a hand-rolled script does) of the same file into one container every
 * second, measured the same way.
 */
import type Dockerode from "dockerode";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { countingProxy } from "../test/support/agent-probe.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";

const CHANGES = Number(process.argv[2] ?? 50);
const FLEET = 50;
const SIGNAL_FLEET = 10;
const IDLE_FLEET = 100;
const PASS_FLEET = 200;
const POLL = "1s";
const DOCKER_CLI = ["/usr/local/bin/docker", "/usr/bin/docker"].find((p) => existsSync(p))!;
const WATCH = 'trap "exit 0" TERM; while true; do sleep 1; done';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const pids = new Map<string, number>();

/** Read a file as the container sees it: through its root, from the host. */
function readInside(id: string, path = "/run/secrets/token"): string | undefined {
  try {
    return readFileSync(`/proc/${pids.get(id)}/root${path}`, "utf8").trim();
  } catch {
    return undefined;
  }
}

async function startWatchers(docker: Dockerode, count: number, labels: Record<string, string>, prefix: string, script = WATCH) {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const c = await docker.createContainer({
      name: `${prefix}-${i}-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", script],
      Labels: labels,
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    await c.start();
    pids.set(c.id, (await c.inspect()).State.Pid);
    ids.push(c.id);
  }
  return ids;
}

async function measure(docker: Dockerode, ids: string[], write: (v: string) => Promise<void>, label: string, path?: string) {
  const latencies: number[] = [];
  for (let n = 0; n < CHANGES; n++) {
    const value = `${label}-v${n}-${crypto.randomUUID()}`;
    const t0 = Date.now();
    await write(value);
    const deadline = t0 + 15_000;
    const pending = new Set(ids);
    while (pending.size && Date.now() < deadline) {
      await Bun.sleep(10);
      for (const id of [...pending]) {
        if (readInside(id, path) === value) {
          latencies.push(Date.now() - t0);
          pending.delete(id);
        }
      }
    }
    if (pending.size) throw new Error(`${pending.size} containers never saw change ${n}`);
    await Bun.sleep(Math.random() * 300);
  }
  return latencies;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

function childPids(pid: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(pid)]).stdout.toString().trim();
  return out ? out.split("\n").map(Number) : [];
}

const { docker, host } = await ensureDocker();
await ensureTestImages(docker);
const dir = await mkdtemp("/tmp/dso-bench-rotation-");
await mkdir(join(dir, "secrets"));
await writeFile(join(dir, "secrets", "token"), "initial");
await writeFile(join(dir, "dso.yaml"), `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  watch:\n    polling_interval: ${POLL}\n`);
const proxy = countingProxy(host.replace(/^unix:\/\//, ""), join(dir, "counted-docker.sock"));
await proxy.ready;
const agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: proxy.host, env: {} });
const labels = { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "none" };
const rows: string[][] = [];
try {
  const writeSecret = (v: string) => writeFile(join(dir, "secrets", "token"), v);
  const one = await startWatchers(docker, 1, labels, "rot1");
  await Bun.sleep(2000);
  const l1 = await measure(docker, one, writeSecret, "one");
  rows.push(["dso agent, 1 container", String(l1.length), pct(l1, 50).toFixed(0), pct(l1, 95).toFixed(0)]);

  const fleet = await startWatchers(docker, FLEET, labels, "rot50");
  await Bun.sleep(5000);
  const l50 = await measure(docker, [...one, ...fleet].slice(0, FLEET), writeSecret, "fleet");
  rows.push([`dso agent, ${FLEET} containers`, String(l50.length), pct(l50, 50).toFixed(0), pct(l50, 95).toFixed(0)]);

  // Baseline: a script that docker-cp's the file every second into a tmpfs volume container.
  const vol = `rotbase-${process.pid}`;
  await docker.createVolume({ Name: vol, DriverOpts: { type: "tmpfs", device: "tmpfs", o: "size=1m" } });
  const base = await docker.createContainer({
    name: `rotbase-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", WATCH],
    HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
  });
  await base.start();
  pids.set(base.id, (await base.inspect()).State.Pid);
  const src = join(dir, "cp-src");
  await mkdir(src);
  let stopLoop = false;
  const loop = (async () => {
    while (!stopLoop) {
      Bun.spawnSync([DOCKER_CLI, "cp", join(src, "token"), `${base.id}:/run/secrets/token`], { env: { PATH: process.env.PATH!, DOCKER_HOST: host } });
      await Bun.sleep(1000);
    }
  })();
  const lcp = await measure(docker, [base.id], (v) => writeFile(join(src, "token"), v), "cp");
  stopLoop = true;
  await loop;
  rows.push(["docker cp loop every 1 s, 1 container", String(lcp.length), pct(lcp, 50).toFixed(0), pct(lcp, 95).toFixed(0)]);

  // Change → strategy done: the value each signal container sees when its SIGHUP arrives.
  const hupScript = `trap "exit 0" TERM; trap 'cat /run/secrets/hupped > /tmp/hup' HUP; while true; do sleep 0.05; done`;
  await writeFile(join(dir, "secrets", "hupped"), "initial");
  const signalled = await startWatchers(docker, SIGNAL_FLEET, { "dso.reloader": "true", "dso.secrets": "hupped", "dso.update.strategy": "signal" }, "rotsig", hupScript);
  await Bun.sleep(3000);
  const lsig = await measure(docker, signalled, (v) => writeFile(join(dir, "secrets", "hupped"), v), "sig", "/tmp/hup");
  rows.push([`dso agent, ${SIGNAL_FLEET} signal containers: change → SIGHUP handled`, String(lsig.length), pct(lsig, 50).toFixed(0), pct(lsig, 95).toFixed(0)]);

  await startWatchers(docker, IDLE_FLEET - FLEET - 1, labels, "idle");
  await Bun.sleep(10_000);
  const agentRss = rssKiB(agent.proc.pid);
  const providers = childPids(agent.proc.pid).map(rssKiB);
  console.log(`\nRotation propagation (provider change → new content seen inside), ${POLL} polling, ms:\n`);
  console.log("| setup | changes×containers | p50 ms | p95 ms |\n|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  console.log(`\nIdle with ${IDLE_FLEET} labelled containers: agent RSS ${(agentRss / 1024).toFixed(1)} MiB; provider process RSS ${providers.map((k) => (k / 1024).toFixed(1)).join(", ")} MiB\n`);

  // A reconcile pass over up-to-date containers: what it costs the daemon.
  const running = (await docker.listContainers()).filter((c) => c.Names.some((n) => n.includes(`-${process.pid}`)) && c.Labels["dso.reloader"] === "true").length;
  await startWatchers(docker, PASS_FLEET - running, labels, "pass");
  await Bun.sleep(8000);
  const passes: Array<{ ms: number; calls: number; counts: Map<string, number> }> = [];
  for (let i = 0; i < 3; i++) {
    proxy.reset();
    const t0 = performance.now();
    const sync = await agent.cli(["sync", "--json"]);
    const ms = performance.now() - t0;
    if (sync.code !== 0) throw new Error(`dso sync failed: ${sync.stderr}`);
    passes.push({ ms, calls: proxy.total(), counts: proxy.counts() });
  }
  const best = passes.sort((a, b) => a.ms - b.ms)[0]!;
  console.log(`Reconcile pass (dso sync) over ${PASS_FLEET} up-to-date containers, best of 3: ${best.ms.toFixed(0)} ms wall, ${best.calls} Docker API calls:`);
  for (const [k, n] of [...best.counts].sort()) console.log(`  ${n} × ${k}`);
} finally {
  await agent.stop("SIGTERM");
  const all = await docker.listContainers({ all: true });
  for (const c of all) if (c.Names.some((n) => n.includes(`-${process.pid}`))) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  await docker.getVolume(`rotbase-${process.pid}`).remove().catch(() => {});
  proxy.stop();
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
