#!/usr/bin/env bun
/**
 * Metrics and audit on vs off, in the running agent (compiled binary, file provider, private
 * dockerd; run as root: bun bench/observe-agent.ts [rotations]). 100 labelled `--tmpfs`
 * containers share one secret; the same number of rotations (`dso rotate`) runs against an agent
 * with metrics + audit (to a file) on and against one with both off, one after the other in the
 * same run. Printed: the agent's CPU seconds (utime+stime from /proc) over the rotations and its
 * RSS after them, and the scrape time of /metrics.
 */
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";

const CONTAINERS = 100;
const ROTATIONS = Number(process.argv[2] ?? 10);
const CLOCK_TICKS = 100;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
}

const { docker, host } = await ensureDocker();
await ensureTestImages(docker);
const dir = await mkdtemp("/tmp/dso-bench-observe-");
await mkdir(join(dir, "secrets"));
await writeFile(join(dir, "secrets", "token"), "initial");
const containers: Dockerode.Container[] = [];
const rows: string[][] = [];
try {
  for (let i = 0; i < CONTAINERS; i++) {
    const c = await docker.createContainer({
      name: `obs-${i}-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; trap "true" HUP; while true; do sleep 1; done'],
      Labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    await c.start();
    containers.push(c);
  }
  for (const on of [true, false]) {
    const config = join(dir, `dso-${on ? "on" : "off"}.yaml`);
    const observe = on ? `  metrics:\n    enabled: true\n  audit:\n    output: ${join(dir, "audit.log")}\n` : "";
    await writeFile(config, `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  watch:\n    polling_interval: 1h\n${observe}`);
    const agent = await startAgent({ dir, config, dockerHost: host, name: `obs-${on ? "on" : "off"}` });
    await agent.waitForLog(/connected to Docker/);
    await agent.cli(["sync"]);
    const cpu0 = cpuSeconds(agent.proc.pid);
    const t0 = performance.now();
    for (let n = 0; n < ROTATIONS; n++) {
      await writeFile(join(dir, "secrets", "token"), `value-${on}-${n}-${crypto.randomUUID()}`);
      const r = await agent.cli(["rotate", "token"]);
      if (r.code !== 0) throw new Error(`rotate failed: ${r.stderr}`);
    }
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(agent.proc.pid) - cpu0;
    const rss = rssMiB(agent.proc.pid);
    let scrape = "-";
    if (on) {
      const s0 = performance.now();
      const text = await (await fetch("http://dso/metrics", { unix: agent.socket } as RequestInit)).text();
      scrape = `${(performance.now() - s0).toFixed(1)} ms, ${(text.length / 1024).toFixed(0)} KiB`;
    }
    rows.push([on ? "metrics + audit on" : "metrics + audit off", `${ROTATIONS}×${CONTAINERS}`, wall.toFixed(1), cpu.toFixed(2), rss.toFixed(1), scrape]);
    await agent.stop("SIGTERM");
  }
  console.log(`\nAgent with metrics + audit on vs off: ${ROTATIONS} rotations of one secret in ${CONTAINERS} signal containers\n`);
  console.log("| agent | rotations×containers | wall s | agent CPU s | agent RSS MiB | /metrics scrape |\n|---|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
} finally {
  for (const c of containers) await c.remove({ force: true }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
