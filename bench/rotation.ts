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
 *
 * Change detection by push (issue 23), in the same run after the first agent stopped (or alone
 * with `--events-only`): the aws provider against test/support/aws-server.ts, with an SQS queue
 * (test/support/sqs-server.ts) that gets an EventBridge event at each change: change → new file
 * inside, p50/p95, with events and 1 h polling, beside the same provider at 1 s and 30 s polling
 * (fewer changes at 30 s: each waits half an interval on average; a polled change lands at a random
 * point of the interval). The events row is broken into stages from the agent's log times
 * (`--events-latency`: that row alone; DSO_BENCH_LOGS=<dir> keeps the agents' logs). Then the provider API calls a poll of 1,000
 * declared secrets makes (counted at the server), turned into calls per hour for events + 1 h
 * polling against 30 s polling.
 */
import type Dockerode from "dockerode";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer } from "../test/support/aws-server.ts";
import { startSqsServer } from "../test/support/sqs-server.ts";
import { countingProxy } from "../test/support/agent-probe.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";

const EVENTS_ONLY = process.argv.includes("--events-only") || process.argv.includes("--events-latency");
/** Only the events row and its stages (quick iterations on the event path). */
const EVENTS_LATENCY = process.argv.includes("--events-latency");
const CHANGES = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 50);
const SLOW_POLL_CHANGES = Math.max(3, Math.round(CHANGES / 10));
const SECRETS_FOR_COST = 1000;
/** Changes with events come at least this far apart (1.5–2 s): rotations are rarer than that, and
 *  the spare fetch child that replaces the one a change used starts 0.5 s after it. */
const EVENT_PAUSE_MS = 1500;
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
  return measureN(ids, write, label, path, CHANGES);
}

/** `pauseMs`: the longest random pause between changes (a poll interval, so a change lands anywhere in it). */
async function measureN(ids: string[], write: (v: string) => Promise<void>, label: string, path: string | undefined, changes: number, starts: number[] = [], pauseMs = 300, minPauseMs = 0) {
  const latencies: number[] = [];
  for (let n = 0; n < changes; n++) {
    const value = `${label}-v${n}-${crypto.randomUUID()}`;
    const t0 = Date.now();
    starts.push(t0);
    await write(value);
    const deadline = t0 + 60_000;
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
    await Bun.sleep(minPauseMs + Math.random() * pauseMs);
  }
  return latencies;
}

const parseDuration = (d: string) => Number.parseInt(d, 10) * (d.endsWith("h") ? 3_600_000 : d.endsWith("m") ? 60_000 : 1000);

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

function childPids(pid: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(pid)]).stdout.toString().trim();
  return out ? out.split("\n").map(Number) : [];
}

/** One agent on the aws provider: `events` or not, `poll` interval; `app-db` into `containers` watchers. */
async function awsAgentRun(docker: Dockerode, host: string, dir: string, opts: { events: boolean; poll: string; changes: number; declared?: number }) {
  const aws = await startAwsServer();
  const sqs = await startSqsServer();
  aws.state.putSecret("app-db", "initial");
  const extra = Array.from({ length: (opts.declared ?? 1) - 1 }, (_, i) => `bulk-${i}`);
  for (const name of extra) aws.state.putSecret(name, "x");
  const queue = sqs.queueUrl("dso-events");
  const yaml = [
    "providers:",
    "  cloud:",
    "    type: aws",
    "    region: us-east-1",
    `    config: { endpoint: "${aws.url}" }`,
    ...(opts.events ? ["    events:", `      queue: ${queue}`] : []),
    "secrets:",
    ...["app-db", ...extra].map((n) => `  - { name: ${n}, provider: cloud }`),
    "agent:",
    "  watch:",
    `    polling_interval: ${opts.poll}`,
    "",
  ].join("\n");
  const name = `aws-${opts.events ? "events" : "poll"}-${opts.poll}`;
  await writeFile(join(dir, `${name}.yaml`), yaml);
  const agent = await startAgent({ dir, name, config: join(dir, `${name}.yaml`), dockerHost: host, env: { AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "bench-key", AWS_EC2_METADATA_DISABLED: "true" } });
  try {
    const ids = await startWatchers(docker, 1, { "dso.reloader": "true", "dso.secrets": "app-db", "dso.update.strategy": "none" }, name);
    await Bun.sleep(3000);
    const arn = aws.state.secrets.get("app-db")!.arn;
    const write = async (value: string) => {
      aws.state.putSecret("app-db", value);
      if (opts.events) sqs.send("dso-events", JSON.stringify({ source: "aws.secretsmanager", "detail-type": "Secret Label Updated", resources: [arn], detail: { labelUpdated: "AWSCURRENT" } }));
    };
    const starts: number[] = [];
    const latencies = opts.changes > 0 ? await measureN(ids, write, name, "/run/secrets/app-db", opts.changes, starts, opts.events ? 500 : parseDuration(opts.poll), opts.events ? EVENT_PAUSE_MS : 0) : [];
    const listPerPoll = aws.state.calls.ListSecrets ?? 0;
    const stages = stagesFromLog(agent.logs(), starts, latencies);
    if (process.env.DSO_BENCH_LOGS) await Bun.write(join(process.env.DSO_BENCH_LOGS, `${name}.log`), agent.logs());
    return { latencies, stages, calls: { ...aws.state.calls }, sqs: { ...sqs.calls }, listPerPoll };
  } finally {
    await agent.stop("SIGTERM");
    for (const c of await docker.listContainers({ all: true })) if (c.Names.some((n) => n.includes(`${name}-`))) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    await aws.stop();
    await sqs.stop();
  }
}

/** Where a change's time went, from the agent's own (debug, JSON) log lines between two changes. */
const STAGES: Array<[string, RegExp]> = [
  // The provider's line after each check (the agent's "secrets changed" line is deduplicated).
  ["change detected: event read, fingerprint checked", /"msg":"fingerprint poll"/],
  // With a spare fetch child waiting (providers with events) no child starts here: no line.
  ["wave started, fetch child spawned and ready", /"msg":"provider ready"/],
  ["value fetched and written into the container", /"msg":"delivered secrets to container"/],
];
function stagesFromLog(log: string, starts: number[], latencies: number[]): Map<string, number[]> {
  const lines = log.split("\n").flatMap((l) => {
    try {
      const j = JSON.parse(l) as { time: string; msg: string };
      return [{ at: Date.parse(j.time), line: l }];
    } catch {
      return [];
    }
  });
  const out = new Map<string, number[]>(STAGES.map(([label]) => [label, []]));
  out.set("seen inside (bench reads every 10 ms)", []);
  starts.forEach((t0, i) => {
    const seen = latencies[i] === undefined ? undefined : t0 + latencies[i]!;
    // Stages are looked for in order between the change and the moment it was seen inside; one
    // missing (no child started: a spare served the fetch) is left out, not mismatched.
    const end = Math.min((seen ?? Number.POSITIVE_INFINITY) + 50, starts[i + 1] ?? Number.POSITIVE_INFINITY);
    let prev = t0;
    for (const [label, pattern] of STAGES) {
      const hit = lines.find((l) => l.at >= prev && l.at < end && pattern.test(l.line));
      if (!hit) continue;
      out.get(label)!.push(hit.at - prev);
      prev = hit.at;
    }
    if (seen !== undefined) out.get("seen inside (bench reads every 10 ms)")!.push(Math.max(0, seen - prev));
  });
  return out;
}

function printPush(rows: string[][], stages: Map<string, number[]>): void {
  console.log(`\nChange detection by push (provider change → new content seen inside), ms:\n`);
  console.log("| setup | changes | p50 ms | p95 ms |\n|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  console.log(`\nWhere the time goes with events (each stage from the end of the one before, agent log times), ms:\n`);
  console.log("| stage | n | p50 ms | p95 ms |\n|---|---|---|---|");
  for (const [label, xs] of stages) if (xs.length) console.log(`| ${label} | ${xs.length} | ${pct(xs, 50).toFixed(0)} | ${pct(xs, 95).toFixed(0)} |`);
}

async function pushSection(docker: Dockerode, host: string, dir: string): Promise<void> {
  const rows: string[][] = [];
  const events = await awsAgentRun(docker, host, dir, { events: true, poll: "1h", changes: CHANGES });
  rows.push(["aws, change events (SQS) + 1 h polling", String(events.latencies.length), pct(events.latencies, 50).toFixed(0), pct(events.latencies, 95).toFixed(0)]);
  if (EVENTS_LATENCY) return printPush(rows, events.stages);
  const slow = await awsAgentRun(docker, host, dir, { events: false, poll: "30s", changes: SLOW_POLL_CHANGES });
  rows.push(["aws, 30 s polling, no events", String(slow.latencies.length), pct(slow.latencies, 50).toFixed(0), pct(slow.latencies, 95).toFixed(0)]);
  const fast = await awsAgentRun(docker, host, dir, { events: false, poll: "1s", changes: CHANGES });
  rows.push(["aws, 1 s polling, no events", String(fast.latencies.length), pct(fast.latencies, 50).toFixed(0), pct(fast.latencies, 95).toFixed(0)]);
  printPush(rows, events.stages);
  // The cost of one poll of 1,000 declared secrets, counted at the server (its first poll).
  const cost = await awsAgentRun(docker, host, dir, { events: false, poll: "1h", changes: 0, declared: SECRETS_FOR_COST });
  const perPoll = cost.calls.ListSecrets ?? 0;
  const receivesPerHour = 3600 / 20;
  // Measured in the events run: metadata calls per event beyond that run's first poll (1 secret).
  const perEvent = ((events.calls.ListSecrets ?? 0) + (events.calls.DescribeSecret ?? 0) - 1) / Math.max(1, events.latencies.length);
  console.log(`\nProvider API calls per hour for ${SECRETS_FOR_COST} secrets (one poll = ${perPoll} ListSecrets calls, measured):`);
  console.log("| setup | Secrets Manager calls/h | SQS calls/h (idle) |\n|---|---|---|");
  console.log(`| events + 1 h polling | ${perPoll} + ${perEvent.toFixed(1)} per change event (measured) | ${receivesPerHour} ReceiveMessage (20 s long polls) + 1 DeleteMessage per event |`);
  console.log(`| 30 s polling | ${perPoll * 120} | 0 |`);
}

const { docker, host } = await ensureDocker();
if (EVENTS_ONLY) {
  await ensureTestImages(docker);
  const dir = await mkdtemp("/tmp/dso-bench-push-");
  try {
    await pushSection(docker, host, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await stopDocker();
  }
  process.exit(0);
}
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
  await agent.stop("SIGTERM");
  await pushSection(docker, host, dir);
} finally {
  await agent.stop("SIGTERM");
  const all = await docker.listContainers({ all: true });
  for (const c of all) if (c.Names.some((n) => n.includes(`-${process.pid}`))) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  await docker.getVolume(`rotbase-${process.pid}`).remove().catch(() => {});
  proxy.stop();
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
