#!/usr/bin/env bun
/**
 * How long `docker stop` of a container with a DSO volume takes when the agent (a legacy volume
 * driver) is absent: dockerd calls VolumeDriver.Unmount when the container stops and its plugin
 * client retries a missing socket with backoff (1+2+4+8 s) before it gives up. And how fast the
 * stop completes when the agent comes back meanwhile (the remedy). Numbers go to docs/deploy.md.
 * Run as root: bun bench/stop-without-agent.ts (starts its own dockerd).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../test/support/agent-process.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../test/support/test-images.ts";

const AGENT_BACK_AFTER_MS = 3_000;
const TRAPS_TERM = "trap 'exit 0' TERM; while true; do sleep 0.1; done";
/** PID 1 without a TERM handler: docker stop waits its 10 s, then kills. */
const IGNORES_TERM = "sleep 1d";

const d = await ensureDocker();
await ensureTestImages(d.docker);
const dir = await mkdtemp("/tmp/dso-stopbench-");
await mkdir(join(dir, "secrets"), { mode: 0o700 });
await writeFile(join(dir, "secrets", "s"), "bench-value", { mode: 0o600 });
await writeFile(join(dir, "dso.yaml"), `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  volumes_root: ${join(dir, "vols")}\n`);
const driver = `dso-stopbench-${process.pid}`;
const socket = `/run/docker/plugins/${driver}.sock`;
await mkdir("/run/docker/plugins", { recursive: true });
const started: AgentProcess[] = [];
const agent = async () => {
  const a = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host, name: driver, socket });
  started.push(a);
  return a;
};

async function docker(args: string[], tool = "docker"): Promise<{ ms: number; code: number; stderr: string }> {
  const t0 = performance.now();
  const proc = Bun.spawn([tool, ...args], { env: { PATH: process.env.PATH!, DOCKER_HOST: d.host }, stdout: "ignore", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !args.includes("stop")) throw new Error(`${tool} ${args.join(" ")}: ${stderr.trim()}`);
  return { ms: Math.round(performance.now() - t0), code, stderr };
}

/** The same with docker-compose (v1, when installed): `up -d` a service on an external DSO volume, then `stop`. */
async function composeScenario(): Promise<void> {
  if (Bun.spawnSync(["which", "docker-compose"]).exitCode !== 0) return console.log("docker-compose not installed: compose scenario skipped");
  const name = `s${++count}`;
  const first = await agent();
  await docker(["volume", "create", "-d", driver, "-o", "secrets=s", `v-${name}`]);
  const file = join(dir, "compose.yaml");
  const command = JSON.stringify(["sh", "-c", TRAPS_TERM]);
  await writeFile(file, `version: "2.4"\nservices:\n  app:\n    image: ${BUSYBOX_IMAGE}\n    command: ${command}\n    network_mode: none\n    volumes: ["secrets:/run/secrets"]\nvolumes:\n  secrets:\n    external: true\n    name: v-${name}\n`);
  const compose = ["-p", `dsobench${process.pid}`, "-f", file];
  await docker([...compose, "up", "-d"], "docker-compose");
  await first.stop("SIGKILL");
  const { ms, code, stderr } = await docker([...compose, "stop"], "docker-compose");
  const why = code === 0 ? "" : `: ${stderr.trim().split("\n").at(-1)}`;
  console.log(`${"agent killed, docker-compose stop".padEnd(36)} ${(ms / 1000).toFixed(1)} s (exit ${code}${why})`);
  const cleaner = await agent();
  await docker([...compose, "down"], "docker-compose");
  await docker(["volume", "rm", `v-${name}`]);
  await cleaner.stop("SIGTERM");
}

let count = 0;
async function scenario(label: string, command: string, whileStopping: () => Promise<AgentProcess | undefined>): Promise<void> {
  const name = `s${++count}`;
  const first = await agent();
  await docker(["volume", "create", "-d", driver, "-o", "secrets=s", `v-${name}`]);
  await docker(["run", "-d", "--name", `c-${name}`, "--network", "none", "--mount", `type=volume,src=v-${name},dst=/run/secrets`, BUSYBOX_IMAGE, "sh", "-c", command]);
  await first.stop("SIGKILL");
  const stopping = docker(["stop", `c-${name}`]);
  const helper = await whileStopping();
  const { ms, code } = await stopping;
  console.log(`${label.padEnd(36)} docker stop: ${(ms / 1000).toFixed(1)} s (exit ${code})`);
  await helper?.stop("SIGTERM");
  const cleaner = await agent();
  await docker(["rm", "-f", `c-${name}`]);
  await docker(["volume", "rm", `v-${name}`]);
  await cleaner.stop("SIGTERM");
}

try {
  await scenario("agent killed (stale socket)", TRAPS_TERM, async () => undefined);
  await scenario("agent gone (socket removed)", TRAPS_TERM, async () => {
    await rm(socket, { force: true });
    return undefined;
  });
  await scenario("agent gone, app ignores SIGTERM", IGNORES_TERM, async () => undefined);
  await scenario(`agent back after ${AGENT_BACK_AFTER_MS / 1000} s`, TRAPS_TERM, async () => {
    await Bun.sleep(AGENT_BACK_AFTER_MS);
    return agent();
  });
  await composeScenario();
} finally {
  for (const a of started) await a.stop("SIGKILL");
  for (const path of [socket, `${socket}.lock`]) await rm(path, { force: true });
  Bun.spawnSync(["umount", "-l", join(dir, "vols")]);
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
