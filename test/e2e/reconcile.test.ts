/**
 * Rotation converges whatever happened before (issue: "Rotation that converges"). Each case is
 * one a user met on a real host: a strategy skipped because a DSO volume's Mount fetched the new
 * value first, plugin containers orphaned by an agent restart, containers that only mount a DSO
 * volume, a second agent on the same socket, rapid and overlapping changes, and an agent killed
 * in the middle of a rolling replacement. Compiled agent, file provider, the private dockerd.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dsoBinary } from "../support/dso-binary.ts";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const DRIVER = `dso-rec-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
/** Prints the secret's value at every SIGHUP, so a test can count runs per version. */
const hupLogger = (file: string) => `trap "exit 0" TERM; trap 'echo hup:$(cat /run/secrets/${file})' HUP; while true; do sleep 0.1; done`;
const HUP_LOGGER = hupLogger("token");

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let secretsDir: string;
let volumesRoot: string;
let configPath: string;
let agent: AgentProcess;
const agents: AgentProcess[] = [];
const containers: string[] = [];
const volumes: string[] = [];
let counter = 0;

async function setSecret(name: string, value: string): Promise<void> {
  await writeFile(join(secretsDir, `${name}.tmp`), value);
  await Bun.$`mv ${join(secretsDir, `${name}.tmp`)} ${join(secretsDir, name)}`.quiet();
}

async function startNamedAgent(name: string): Promise<AgentProcess> {
  const a = await startAgent({ dir, config: configPath, dockerHost, name });
  agents.push(a);
  await a.waitForLog(/connected to Docker/);
  return a;
}

async function linkPluginSocket(a: AgentProcess): Promise<void> {
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${a.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
}

async function dsoVolume(secrets: string, extra: Record<string, string> = {}): Promise<string> {
  const name = `recvol-${process.pid}-${++counter}`;
  await docker.createVolume({ Name: name, Driver: DRIVER, DriverOpts: { secrets, mode: "0444", ...extra } });
  volumes.push(name);
  return name;
}

async function run(name: string, opts: { labels?: Record<string, string>; volume?: string; script?: string; extra?: Partial<Dockerode.ContainerCreateOptions> }) {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", opts.script ?? HUP_LOGGER],
    Labels: opts.labels ?? {},
    HostConfig: {
      NetworkMode: "none",
      ...(opts.volume ? { Mounts: [{ Type: "volume", Source: opts.volume, Target: "/run/secrets" }] } : { Tmpfs: { "/run/secrets": "rw,mode=0755" } }),
    },
    ...opts.extra,
  });
  containers.push(c.id);
  await c.start();
  return c;
}

async function logsOf(id: string): Promise<string> {
  return ((await docker.getContainer(id).logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

const hups = async (id: string) => (await logsOf(id)).split("\n").filter((l) => l.includes("hup:")).map((l) => l.slice(l.indexOf("hup:") + 4).trim());

async function tokenIn(id: string, file = "token"): Promise<string | undefined> {
  const r = await execIn(docker, id, ["cat", `/run/secrets/${file}`]);
  return r.code === 0 ? r.stdout : undefined;
}

const waitFor = (id: string, value: string, file = "token", timeoutMs = 20_000) =>
  eventually(`${file}=${value}`, async () => ((await tokenIn(id, file)) === value ? true : undefined), timeoutMs);

async function lsEntry(name: string) {
  const out = await agent.cli(["ls", "--json"]);
  const parsed = JSON.parse(out.stdout || "{}") as { containers?: Array<{ id: string; name: string; strategy: string; status: Array<{ name: string; state: string; mode?: string; wanted?: string; actual?: string }>; lastStrategy?: { outcome: string } }> };
  return parsed.containers?.find((c) => c.name === `${name}-${process.pid}`);
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-reconcile-"));
  secretsDir = join(dir, "secrets");
  volumesRoot = join(dir, "volumes");
  await mkdir(secretsDir);
  await mkdir(PLUGIN_DIR, { recursive: true });
  configPath = join(dir, "dso.yaml");
  // A long polling interval: changes must be noticed by who fetched them, not by a poll.
  await writeFile(
    configPath,
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${secretsDir}\nagent:\n  volumes_root: ${volumesRoot}\n  watch:\n    polling_interval: 1h\n`,
  );
  agent = await startNamedAgent(DRIVER);
  await linkPluginSocket(agent);
});

afterAll(async () => {
  // Containers first, while an agent still answers for their DSO volumes (Unmount, Remove).
  await Promise.all(containers.map((id) => docker.getContainer(id).remove({ force: true }).catch(() => {})));
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  if (process.env.DSO_TEST_DUMP) await Bun.write(process.env.DSO_TEST_DUMP, agents.map((a) => a.logs()).join("\n----\n"));
  for (const a of agents) await a.stop("SIGKILL");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
}, 120_000);

describe("rotation converges", () => {
  test("a signal container is signalled even when a DSO volume's Mount fetched the new value first", async () => {
    await setSecret("token", "mount-first-v1");
    const app = await run("rec-signal", { labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" } });
    await waitFor(app.id, "mount-first-v1");
    await setSecret("token", "mount-first-v2");
    // No poll for an hour: the Mount of a new volume container is the first to see v2.
    const vol = await dsoVolume("token");
    const other = await run("rec-mounter", { volume: vol, script: "sleep 3600" });
    expect(await tokenIn(other.id)).toBe("mount-first-v2");
    await waitFor(app.id, "mount-first-v2");
    expect(await eventually("one SIGHUP after the new file", async () => ((await hups(app.id)).length ? await hups(app.id) : undefined))).toEqual(["mount-first-v2"]);
    await Bun.sleep(1500);
    expect(await hups(app.id)).toEqual(["mount-first-v2"]);
  });

  test("a container that only mounts a DSO volume is listed and rotated (strategy none), and signalled when the volume says so", async () => {
    await setSecret("plain", "plain-v1");
    const quiet = await run("rec-volonly", { volume: await dsoVolume("plain"), script: 'trap "exit 0" TERM; trap "echo hup:x" HUP; while true; do sleep 0.1; done' });
    const loud = await run("rec-volsignal", { volume: await dsoVolume("plain", { strategy: "signal" }), script: hupLogger("plain") });
    expect(await tokenIn(quiet.id, "plain")).toBe("plain-v1");
    const listed = await eventually("listed by dso ls", () => lsEntry("rec-volonly"));
    expect(listed.strategy).toBe("none");
    expect(listed.status[0]).toMatchObject({ name: "plain", mode: "plugin" });
    await setSecret("plain", "plain-v2");
    expect((await agent.cli(["rotate", "plain"])).code).toBe(0);
    await waitFor(quiet.id, "plain-v2", "plain");
    await waitFor(loud.id, "plain-v2", "plain");
    expect(await eventually("SIGHUP for the signal volume", async () => ((await hups(loud.id)).length ? await hups(loud.id) : undefined))).toEqual(["plain-v2"]);
    expect(await hups(quiet.id)).toEqual([]);
  });

  test("after an agent restart, plugin containers keep being rotated, without a strategy run for nothing", async () => {
    await setSecret("token", "restart-v1");
    const vol = await dsoVolume("token");
    const c = await run("rec-plugin-restart", { volume: vol, labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" } });
    await waitFor(c.id, "restart-v1");
    await agent.stop("SIGKILL");
    agent = await startNamedAgent(`${DRIVER}`);
    await Bun.sleep(1500);
    expect(await hups(c.id)).toEqual([]);
    const listed = await eventually("listed after the restart", () => lsEntry("rec-plugin-restart"));
    expect(listed.status.every((s) => s.state === "current")).toBe(true);
    await setSecret("token", "restart-v2");
    const rotated = await agent.cli(["rotate", "token"]);
    expect(rotated.stderr).not.toContain("not mounted");
    expect(rotated.code).toBe(0);
    await waitFor(c.id, "restart-v2");
    expect(await eventually("one SIGHUP", async () => ((await hups(c.id)).length ? await hups(c.id) : undefined))).toEqual(["restart-v2"]);
    // dockerd and the agent still agree: the volume is answered and can be removed once unused.
    await docker.getContainer(c.id).remove({ force: true });
    await docker.getVolume(vol).remove();
  });

  test("a second agent on the same socket refuses, naming the first; a killed agent's socket is taken over", async () => {
    const binary = await dsoBinary();
    const second = Bun.spawnSync([binary, "agent", "--config", configPath, "--socket", agent.socket], { env: { PATH: process.env.PATH!, DOCKER_HOST: dockerHost }, stderr: "pipe", stdout: "pipe" });
    expect(second.exitCode).not.toBe(0);
    const said = `${second.stdout.toString()}${second.stderr.toString()}`;
    expect(said).toContain(`pid ${agent.proc.pid}`);
    expect((await agent.cli(["status"])).code).toBe(0);
    const vol = await dsoVolume("token");
    const c = await run("rec-after-second", { volume: vol, script: "sleep 3600" });
    expect(await tokenIn(c.id)).toBeDefined();
    await agent.stop("SIGKILL");
    agent = await startNamedAgent(DRIVER);
    expect((await agent.cli(["status"])).code).toBe(0);
    expect(((await docker.getVolume(vol).inspect()) as { Name: string }).Name).toBe(vol);
    await docker.getContainer(c.id).remove({ force: true });
    await docker.getVolume(vol).remove();
  });

  test("overlapping and rapid changes end on the last version, with one strategy run per version reached", async () => {
    await setSecret("token", "quick-0");
    const c = await run("rec-rapid", { labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" } });
    await waitFor(c.id, "quick-0");
    const name = `rec-rapid-${process.pid}`;
    // Values must not occur inside the container's name: the agent's log redactor would mask
    // that part of the name ("rapid-1" inside "rec-rapid-1234") and the count below would miss it.
    const count = (pattern: RegExp) => agent.logs().split("\n").filter((l) => l.includes(`"container":"${name}"`) && pattern.test(l)).length;
    // A strategy runs only for a delivery that moved the container from one version to another:
    // never more runs than deliveries after the first. (The shell may fold signals that arrive
    // while it sleeps into one trap run, so it handles at most that many.)
    const expectOneRunPerVersion = async (last: string) => {
      await eventually(`the container's last SIGHUP saw ${last}`, async () => ((await hups(c.id)).at(-1) === last ? true : undefined));
      // The agent logs a run after its signal was sent: wait until its count stops moving.
      let runs = -1;
      for (let seen = count(/rotated secrets in container/); seen !== runs; seen = count(/rotated secrets in container/)) {
        runs = seen;
        await Bun.sleep(1000);
      }
      expect(runs).toBeLessThanOrEqual(count(/delivered secrets to container/) - 1);
      expect((await hups(c.id)).length).toBeLessThanOrEqual(runs);
      return runs;
    };
    // Two rotations in flight at once: the second arrives while the first delivers.
    await setSecret("token", "quick-overlap-1");
    const first = agent.cli(["rotate", "token"]);
    await setSecret("token", "quick-overlap-2");
    const second = agent.cli(["rotate", "token"]);
    await Promise.all([first, second]);
    await waitFor(c.id, "quick-overlap-2");
    const overlapRuns = await expectOneRunPerVersion("quick-overlap-2");
    expect(overlapRuns).toBeGreaterThanOrEqual(1);
    expect(overlapRuns).toBeLessThanOrEqual(2);
    // 20 changes in quick succession, each announced at once.
    const rotations: Promise<unknown>[] = [];
    for (let i = 1; i <= 20; i++) {
      await setSecret("token", `quick-${i}`);
      rotations.push(agent.cli(["rotate", "token"]));
      await Bun.sleep(30);
    }
    await Promise.all(rotations);
    await waitFor(c.id, "quick-20");
    const runs = (await expectOneRunPerVersion("quick-20")) - overlapRuns;
    console.log(`20 rapid changes: ${runs} strategy runs (SIGHUPs)`);
    expect(runs).toBeGreaterThanOrEqual(1);
    expect(runs).toBeLessThanOrEqual(20);
  });

  test("an agent killed during a rolling replacement leaves exactly one running container after the next start", async () => {
    await setSecret("token", "rolling-v1");
    const base = `rec-rolling-${process.pid}`;
    const c = await run("rec-rolling", {
      labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "rolling" },
      // Healthy only after 4 s: the replacement is still starting when the agent is killed.
      script: 'trap "exit 0" TERM; sleep 4; touch /tmp/ready; while true; do sleep 0.1; done',
      extra: { Healthcheck: { Test: ["CMD-SHELL", "test -f /tmp/ready"], Interval: 500_000_000, Retries: 30 } },
    });
    await waitFor(c.id, "rolling-v1");
    await setSecret("token", "rolling-v2");
    void agent.cli(["rotate", "token"]);
    await eventually("a replacement is starting", async () => {
      const all = await docker.listContainers({ all: true, filters: { name: [`${base}-dso-next-`] } });
      for (const x of all) containers.push(x.Id);
      return all.length ? true : undefined;
    });
    await agent.stop("SIGKILL");
    agent = await startNamedAgent(DRIVER);
    const running = await eventually("exactly one container serves the name", async () => {
      const list = await docker.listContainers({ all: true, filters: { name: [base] } });
      for (const x of list) containers.push(x.Id);
      const mine = list.filter((x) => (x.Names[0] ?? "").replace(/^\//, "").startsWith(base));
      const up = mine.filter((x) => x.State === "running");
      return mine.length === 1 && up.length === 1 && up[0]!.Names[0] === `/${base}` ? up[0] : undefined;
    });
    expect(running.State).toBe("running");
  });
});
