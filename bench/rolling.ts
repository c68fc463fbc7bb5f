#!/usr/bin/env bun
/**
 * Rolling rotation of one compose service, with the compiled agent and the file provider against
 * a private dockerd (run as root: bun bench/rolling.ts [changes]); the `rolling` row of
 * bench/rotation.ts, kept in its own file because it needs compose and Docker's event stream.
 *
 * The service (busybox, a HEALTHCHECK on its secret file every 0.5 s, `--tmpfs /run/secrets`) is
 * brought up with docker-compose and labelled `dso.update.strategy=rolling`. Per change:
 * change at the provider → a replacement holding the new value is healthy; and, from Docker's
 * events, the gap during which no container of the service is running and healthy (from the old
 * container's `kill` to the replacement's `health_status: healthy`, whichever comes first). Side
 * by side in the same run: `docker-compose up -d --force-recreate` of the same service
 * (command → new container healthy, and the same gap).
 */
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";

const CHANGES = Number(process.argv[2] ?? 10);
const PROJECT = `benchroll${process.pid}`;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const COMPOSE = `version: "2.4"
services:
  web:
    image: ${BUSYBOX_IMAGE}
    network_mode: none
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    tmpfs:
      - /run/secrets
    healthcheck:
      test: ["CMD", "test", "-s", "/run/secrets/token"]
      interval: 500ms
      timeout: 5s
      retries: 3
    labels:
      dso.reloader: "true"
      dso.secrets: token
      dso.update.strategy: rolling
`;

/** Running-and-healthy containers of the service over time, from Docker's event stream. */
class HealthyTimeline {
  private readonly healthy = new Set<string>();
  private emptySince: number | undefined;
  /** Gaps (ms) closed since the last take(). */
  private gaps: number[] = [];
  readonly healthyAt = new Map<string, number>();

  observe(event: { id: string; Action: string; time: number; timeNano?: number }): void {
    const at = event.timeNano ? event.timeNano / 1e6 : event.time * 1000;
    if (event.Action === "health_status: healthy") {
      this.healthyAt.set(event.id, at);
      if (this.healthy.size === 0 && this.emptySince !== undefined) this.gaps.push(at - this.emptySince);
      this.healthy.add(event.id);
      this.emptySince = undefined;
      return;
    }
    if (["kill", "die", "stop", "health_status: unhealthy", "destroy"].includes(event.Action) && this.healthy.delete(event.id) && this.healthy.size === 0) {
      this.emptySince = at;
    }
  }

  take(): number {
    const total = this.gaps.reduce((a, b) => a + b, 0);
    this.gaps = [];
    return total;
  }
}

async function followEvents(docker: Dockerode, timeline: HealthyTimeline): Promise<() => void> {
  const stream = (await docker.getEvents({ filters: { type: ["container"], label: [`com.docker.compose.project=${PROJECT}`] } })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  let buffer = "";
  stream.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim()) timeline.observe(JSON.parse(line));
    }
  });
  return () => stream.destroy();
}

async function compose(dir: string, host: string, args: string[]): Promise<void> {
  const proc = Bun.spawn(["docker-compose", "-p", PROJECT, "-f", join(dir, "docker-compose.yml"), "--no-ansi", ...args], {
    env: { PATH: process.env.PATH!, DOCKER_HOST: host },
    stdout: "ignore",
    stderr: "pipe",
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`docker-compose ${args.join(" ")} failed: ${stderr}`);
}

async function serviceId(docker: Dockerode): Promise<string | undefined> {
  const list = await docker.listContainers({ filters: { label: [`com.docker.compose.project=${PROJECT}`] } });
  return list.length === 1 ? list[0]!.Id : undefined;
}

/** Waits until a container other than `old` is healthy; the time it became so. */
async function healthyReplacement(timeline: HealthyTimeline, old: string, timeoutMs = 60_000): Promise<{ id: string; at: number }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const [id, at] of timeline.healthyAt) if (id !== old) return { id, at };
    await Bun.sleep(20);
  }
  throw new Error("no healthy replacement");
}

const { docker, host } = await ensureDocker();
await ensureTestImages(docker);
const dir = await mkdtemp("/tmp/dso-bench-rolling-");
await mkdir(join(dir, "secrets"));
await writeFile(join(dir, "secrets", "token"), "initial");
await writeFile(join(dir, "docker-compose.yml"), COMPOSE);
await writeFile(
  join(dir, "dso.yaml"),
  `providers:\n  local:\n    type: file\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  watch:\n    polling_interval: 1s\n  rotation:\n    health_check_timeout: 60s\n`,
);
const agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: host, env: {} });
const timeline = new HealthyTimeline();
const stopEvents = await followEvents(docker, timeline);
try {
  await compose(dir, host, ["up", "-d"]);
  let current = (await healthyReplacement(timeline, "")).id;
  const rolling: number[] = [];
  const rollingGaps: number[] = [];
  for (let n = 0; n < CHANGES; n++) {
    timeline.healthyAt.clear();
    timeline.take();
    const t0 = Date.now();
    await writeFile(join(dir, "secrets", "token"), `v${n}-${crypto.randomUUID()}`);
    const next = await healthyReplacement(timeline, current);
    rolling.push(next.at - t0);
    // The old container is gone once the replacement took the name.
    while ((await serviceId(docker)) !== next.id) await Bun.sleep(20);
    rollingGaps.push(timeline.take());
    current = next.id;
    await Bun.sleep(300 + Math.random() * 300);
  }
  const recreate: number[] = [];
  const recreateGaps: number[] = [];
  for (let n = 0; n < CHANGES; n++) {
    timeline.healthyAt.clear();
    timeline.take();
    const t0 = Date.now();
    await compose(dir, host, ["up", "-d", "--force-recreate"]);
    const next = await healthyReplacement(timeline, current);
    recreate.push(next.at - t0);
    recreateGaps.push(timeline.take());
    current = next.id;
    await Bun.sleep(300 + Math.random() * 300);
  }
  const row = (name: string, xs: number[], gaps: number[]) =>
    `| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(0)} | ${pct(xs, 95).toFixed(0)} | ${pct(gaps, 50).toFixed(0)} | ${Math.max(...gaps).toFixed(0)} |`;
  console.log("\nOne compose service with a HEALTHCHECK (every 0.5 s), ms:\n");
  console.log("| how | runs | change → replacement healthy p50 | p95 | no healthy container p50 | max |\n|---|---|---|---|---|---|");
  console.log(row("dso rolling (change at the provider, 1 s polling)", rolling, rollingGaps));
  console.log(row("docker-compose up -d --force-recreate (from the command)", recreate, recreateGaps));
} finally {
  stopEvents();
  await compose(dir, host, ["down", "--timeout", "1"]).catch(() => {});
  await agent.stop("SIGTERM");
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
