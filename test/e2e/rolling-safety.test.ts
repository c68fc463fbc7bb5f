/**
 * Rolling rotation and env re-creation on the real daemon with the compiled agent (issue 19):
 * no rotation loses container data (an image's VOLUME, `-v /path`, named volumes), two
 * containers never write one volume at once, a bad value with a HEALTHCHECK rolls back files and
 * container, and a successful rolling rotation reports nothing but success. The same for `signal`:
 * unhealthy after the signal → the previous files back, signalled again, reported.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const VOLUME_IMAGE = "dso-test/volume-data:1";
const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
/** Checked every 0.2 s; three failures are unhealthy (a check may take seconds on a loaded machine). */
const FAST_HEALTH = { Interval: 200_000_000, Timeout: 10_000_000_000, Retries: 3, StartPeriod: 0 };
const PLANTED = ["rolling-planted-ONE-4f8", "rolling-planted-TWO-7d2", "rolling-planted-THREE-1k9", "rolling-planted-FOUR-5s0"];

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let secretsDir: string;
let agent: AgentProcess;
const names: string[] = [];
const volumes: string[] = [];

async function setSecret(name: string, value: string): Promise<void> {
  await writeFile(join(secretsDir, name), value);
}

async function run(name: string, secret: string, extra: Partial<Dockerode.ContainerCreateOptions> & { HostConfig?: Dockerode.HostConfig } = {}, labels: Record<string, string> = {}) {
  const full = `${name}-${process.pid}`;
  names.push(full);
  const { HostConfig, ...rest } = extra;
  const c = await docker.createContainer({
    name: full,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", IDLE],
    Labels: { "dso.reloader": "true", "dso.secrets": secret, "dso.update.strategy": "rolling", ...labels },
    ...rest,
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" }, ...HostConfig },
  });
  await c.start();
  return full;
}

/** The running container named `name` once `probe` holds for it. */
async function settled(name: string, what: string, probe: (info: Dockerode.ContainerInspectInfo) => Promise<boolean>, timeoutMs = 20_000) {
  return eventually(
    `${name}: ${what}`,
    async () => {
      const info = await docker.getContainer(name).inspect().catch(() => undefined);
      return info?.State.Running && (await probe(info)) ? info : undefined;
    },
    timeoutMs,
  );
}

async function fileIn(id: string, path: string): Promise<string | undefined> {
  const r = await execIn(docker, id, ["cat", path]);
  return r.code === 0 ? r.stdout : undefined;
}

const holds = (path: string, value: string) => async (info: Dockerode.ContainerInspectInfo) => (await fileIn(info.Id, path)) === value;

/** Docker's start/die events since `since` (seconds), in order, of containers named `prefix`…. */
async function startsAndDies(since: number, prefix: string): Promise<Array<{ id: string; action: string }>> {
  const until = Math.ceil(Date.now() / 1000) + 1;
  const stream = (await docker.getEvents({ since, until, filters: { type: ["container"], event: ["start", "die"] } })) as unknown as NodeJS.ReadableStream;
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { id: string; Action: string; Actor: { Attributes: { name?: string } } })
    .filter((e) => e.Actor.Attributes.name?.startsWith(prefix))
    .map((e) => ({ id: e.id, action: e.Action }));
}

/** The most containers running at once, replaying start/die events. */
function mostAtOnce(events: Array<{ id: string; action: string }>): number {
  const running = new Set<string>();
  let most = 0;
  for (const e of events) {
    if (e.action === "start") running.add(e.id);
    else running.delete(e.id);
    most = Math.max(most, running.size);
  }
  return most;
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  // `docker import -c 'VOLUME /data'`, as in the issue: the busybox image with an image volume.
  if (!(await docker.getImage(VOLUME_IMAGE).inspect().catch(() => undefined))) {
    const base = await docker.createContainer({ Image: BUSYBOX_IMAGE, Cmd: ["true"], HostConfig: { NetworkMode: "none" } });
    const [repo, tag] = VOLUME_IMAGE.split(":");
    await base.commit({ repo, tag, changes: ["VOLUME /data"] } as Record<string, unknown>);
    await base.remove({ force: true });
  }
  dir = await mkdtemp(join(tmpdir(), "dso-rolling-"));
  await chmod(dir, 0o755);
  secretsDir = join(dir, "secrets");
  await mkdir(secretsDir);
  for (const s of ["db_token", "env_token", "health_token", "web_token"]) await setSecret(s, PLANTED[0]!);
  await setSecret("health_token", "good-1");
  await setSecret("sig_token", "good-1");
  const config = join(dir, "dso.yaml");
  await writeFile(
    config,
    [
      "providers:",
      "  local:",
      "    type: file",
      "    config:",
      `      path: ${secretsDir}`,
      "agent:",
      "  audit: { enabled: true }",
      "  watch:",
      "    polling_interval: 1s",
      "  rotation:",
      "    health_check_timeout: 4s",
      "secrets:",
      "  - { name: db_token, provider: local }",
      "  - { name: health_token, provider: local }",
      "  - { name: web_token, provider: local }",
      "  - { name: sig_token, provider: local }",
      "  - name: env_token",
      "    provider: local",
      "    inject: env",
      "    mappings: { value: ENV_TOKEN }",
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config, dockerHost, name: "rolling" });
});

afterAll(async () => {
  for (const name of names) {
    for (const c of await docker.listContainers({ all: true, filters: { name: [name] } })) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
  }
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  await agent?.stop("SIGKILL");
  if (!process.env.DSO_KEEP_ROLLING_LOGS) await rm(dir, { recursive: true, force: true });
});

describe("rolling rotation keeps data and rolls back (compiled agent, real daemon)", () => {
  test("an image VOLUME, a -v anonymous volume and a named volume keep their data through rolling; never two writers at once", async () => {
    const named = `rolling-named-${process.pid}`;
    volumes.push(named);
    const health = { Healthcheck: { Test: ["CMD", "test", "-s", "/run/secrets/db_token"], ...FAST_HEALTH } };
    const storage = { Image: VOLUME_IMAGE, Volumes: { "/cache": {} }, ...health, HostConfig: { Binds: [`${named}:/state`] } };
    const db = await run("rs-db", "db_token", storage);
    // Opted in: old and replacement side by side, on the same (carried) volumes.
    const shared = await run("rs-shared", "db_token", { Image: VOLUME_IMAGE, Volumes: { "/cache": {} }, ...health }, { "dso.update.shared-storage": "true" });
    const before = new Map<string, Dockerode.ContainerInspectInfo>();
    for (const name of [db, shared]) {
      const info = await settled(name, "first delivery", holds("/run/secrets/db_token", PLANTED[0]!));
      before.set(name, info);
      const write = await execIn(docker, info.Id, ["sh", "-c", "echo precious-row-1 > /data/table && echo cached > /cache/x && (test ! -d /state || echo state > /state/s)"]);
      expect(write.code).toBe(0);
    }
    const since = Math.floor(Date.now() / 1000) - 1;
    await setSecret("db_token", PLANTED[1]!);
    for (const name of [db, shared]) {
      // Restarted or replaced (a new start either way), on the new value.
      const rotated = async (info: Dockerode.ContainerInspectInfo) => info.State.StartedAt !== before.get(name)!.State.StartedAt && (await holds("/run/secrets/db_token", PLANTED[1]!)(info));
      const after = await settled(name, "rotated", rotated);
      expect(await fileIn(after.Id, "/data/table")).toBe("precious-row-1\n");
      expect(await fileIn(after.Id, "/cache/x")).toBe("cached\n");
      // The same volumes, not copies: the data is where it was.
      const volumesOf = (info: Dockerode.ContainerInspectInfo) => Object.fromEntries((info.Mounts ?? []).filter((m) => m.Type === "volume").map((m) => [m.Destination, m.Name]));
      expect(volumesOf(after)).toEqual(volumesOf(before.get(name)!));
    }
    expect(await fileIn((await docker.getContainer(db).inspect()).Id, "/state/s")).toBe("state\n");
    // The opted-in one was replaced side by side (new id); the other never ran twice.
    expect((await docker.getContainer(shared).inspect()).Id).not.toBe(before.get(shared)!.Id);
    expect(mostAtOnce(await startsAndDies(since, db))).toBe(1);
    expect(agent.logs()).toContain(`it writes to`);
    expect(agent.logs()).toContain(`volume ${named} at /state`);
  }, 60_000);

  test("env re-creation keeps an image VOLUME and a -v anonymous volume with their data", async () => {
    const name = await run("rs-env", "env_token", { Image: VOLUME_IMAGE, Volumes: { "/cache": {} }, Healthcheck: { Test: ["CMD", "true"], ...FAST_HEALTH } });
    const first = await settled(name, "re-created with ENV_TOKEN", async (info) => (info.Config.Env ?? []).includes(`ENV_TOKEN=${PLANTED[0]}`));
    expect((await execIn(docker, first.Id, ["sh", "-c", "echo precious-row-1 > /data/table && echo cached > /cache/x"])).code).toBe(0);
    await setSecret("env_token", PLANTED[1]!);
    const second = await settled(name, "re-created with the new value", async (info) => (info.Config.Env ?? []).includes(`ENV_TOKEN=${PLANTED[1]}`));
    // Done: the old container is gone (the replacement runs under the name while it is proven).
    await eventually("the old container removed", async () => ((await docker.getContainer(first.Id).inspect().catch(() => undefined)) ? undefined : true));
    expect(second.Id).not.toBe(first.Id);
    expect(await fileIn(second.Id, "/data/table")).toBe("precious-row-1\n");
    expect(await fileIn(second.Id, "/cache/x")).toBe("cached\n");
  }, 60_000);

  test("a bad value with a HEALTHCHECK rolls back: the old container keeps running on its previous files; the next good value rolls forward", async () => {
    const name = await run("rs-health", "health_token", { Healthcheck: { Test: ["CMD", "grep", "-q", "good", "/run/secrets/health_token"], ...FAST_HEALTH } });
    const old = await settled(name, "healthy on good-1", async (info) => info.State.Health?.Status === "healthy");
    await setSecret("health_token", "bad-2");
    const ls = await eventually("dso ls says rollback", async () => {
      const out = await agent.cli(["ls", "--json"]);
      const view = (JSON.parse(out.stdout).containers as Array<{ id: string; name: string; status: Array<{ state: string }>; error?: string }>).find((c) => c.name === name);
      return view?.status.some((s) => s.state.startsWith("rollback: ")) ? view : undefined;
    });
    expect(ls.id).toBe(old.Id);
    expect(ls.status[0]!.state).toContain("unhealthy");
    const now = await docker.getContainer(name).inspect();
    expect(now.Id).toBe(old.Id);
    expect(now.State.Running).toBe(true);
    expect(await fileIn(old.Id, "/run/secrets/health_token")).toBe("good-1");
    expect(now.State.Health?.Status).toBe("healthy");
    expect(await docker.listContainers({ all: true, filters: { name: [`${name}-dso-next`] } })).toEqual([]);
    const rotation = agent
      .logs()
      .split("\n")
      .find((l) => l.includes('"tag":"audit"') && l.includes('"event":"rotation"') && l.includes(old.Id) && !l.includes('"outcome":"ok"'));
    expect(rotation).toContain("rollback: replacement unhealthy");
    // Not tried again every pass (polls every 1 s) for the same value; `dso rotate` tries again.
    const rollbacks = () => agent.logs().split("\n").filter((l) => l.includes("rotation rolled back") && l.includes(name)).length;
    await Bun.sleep(1500);
    expect(rollbacks()).toBe(1);
    const again = await agent.cli(["rotate", "health_token"]);
    expect(again.code).toBe(1);
    expect((again.stdout + again.stderr).replace(/\s+/g, " ")).toContain("rollback: replacement unhealthy");
    expect(rollbacks()).toBe(2);
    expect(await fileIn(old.Id, "/run/secrets/health_token")).toBe("good-1");
    await setSecret("health_token", "good-3");
    const next = await settled(name, "rolled forward to good-3", async (info) => info.Id !== old.Id && info.State.Health?.Status === "healthy" && (await holds("/run/secrets/health_token", "good-3")(info)));
    expect(next.Id).not.toBe(old.Id);
  }, 60_000);

  test("three successful rolling rotations log no error, and dso ls shows each replacement current at once", async () => {
    const name = await run("rs-web", "web_token", { Healthcheck: { Test: ["CMD", "test", "-s", "/run/secrets/web_token"], ...FAST_HEALTH } });
    let id = (await settled(name, "first delivery", holds("/run/secrets/web_token", PLANTED[0]!))).Id;
    for (const value of PLANTED.slice(1)) {
      await setSecret("web_token", value);
      const rotated = await agent.cli(["rotate", "web_token"]);
      expect(rotated.code).toBe(0);
      const next = await settled(name, `rotated to ${value}`, async (info) => info.Id !== id && (await holds("/run/secrets/web_token", value)(info)));
      id = next.Id;
      let seen = "";
      await eventually("ls shows the replacement current", async () => {
        const views = JSON.parse((await agent.cli(["ls", "--json"])).stdout).containers as Array<{ id: string; name: string; status: Array<{ state: string }>; error?: string }>;
        const mine = views.filter((v) => v.name === name);
        seen = JSON.stringify(mine.map((v) => ({ id: v.id.slice(0, 12), states: v.status.map((s) => s.state), error: v.error })));
        return mine.length === 1 && mine[0]!.id === id && mine[0]!.status.every((s) => s.state === "current") && !mine[0]!.error ? true : undefined;
      }, 3_000).catch((error: Error) => {
        throw new Error(`${error.message}; replacement ${id.slice(0, 12)}; ls: ${seen}`);
      });
    }
    await agent.cli(["sync"]);
    const problems = agent
      .logs()
      .split("\n")
      .filter((l) => l.includes(name) && /delivery incomplete|no such container|rotation strategy failed/.test(l));
    expect(problems).toEqual([]);
    for (const value of PLANTED) expect(agent.logs()).not.toContain(value);
  }, 60_000);
  test("signal with a HEALTHCHECK: unhealthy after the signal → previous files back, signalled again, reported; the next good value goes through", async () => {
    // The app reads its secret once, then again on each SIGHUP (counted); healthy while what it read is good.
    const app = [
      'trap \'cat /run/secrets/sig_token > /dev/shm/seen; echo hup >> /dev/shm/hups\' HUP',
      "while true; do [ -s /dev/shm/seen ] || cat /run/secrets/sig_token > /dev/shm/seen 2>/dev/null; sleep 0.1; done",
    ].join("; ");
    const name = await run(
      "rs-signal",
      "sig_token",
      // One failed check is unhealthy: on a loaded machine three may not fit in the 4 s window.
      { Cmd: ["sh", "-c", app], Healthcheck: { Test: ["CMD", "grep", "-q", "good", "/dev/shm/seen"], ...FAST_HEALTH, Retries: 1 } },
      { "dso.update.strategy": "signal" },
    );
    const old = await settled(name, "healthy on good-1", async (info) => info.State.Health?.Status === "healthy");
    const hups = async () => ((await fileIn(old.Id, "/dev/shm/hups")) ?? "").split("\n").filter(Boolean).length;
    const versionDirs = async () => ((await execIn(docker, old.Id, ["ls", "-a", "/run/secrets"])).stdout.split("\n").filter((e) => e.startsWith("..dso_")));
    await setSecret("sig_token", "bad-2");
    const ls = await eventually("dso ls says rollback", async () => {
      const out = await agent.cli(["ls", "--json"]);
      const view = (JSON.parse(out.stdout).containers as Array<{ id: string; name: string; status: Array<{ state: string }>; error?: string }>).find((c) => c.name === name);
      return view?.status.some((s) => s.state.startsWith("rollback: ")) ? view : undefined;
    }, 30_000);
    expect(ls.status[0]!.state).toContain("unhealthy after SIGHUP");
    // The previous files, the bad version gone from the tmpfs, signalled a second time, healthy again.
    expect(await fileIn(old.Id, "/run/secrets/sig_token")).toBe("good-1");
    expect(await versionDirs()).toHaveLength(1);
    expect(await hups()).toBe(2);
    await settled(name, "healthy again", async (info) => info.State.Health?.Status === "healthy");
    expect((await docker.getContainer(name).inspect()).Id).toBe(old.Id);
    const rotation = agent
      .logs()
      .split("\n")
      .find((l) => l.includes('"tag":"audit"') && l.includes('"event":"rotation"') && l.includes(old.Id) && !l.includes('"outcome":"ok"'));
    expect(rotation).toContain("rollback: unhealthy after SIGHUP");
    expect(rotation).toContain("previous files restored, signalled again");
    // Not delivered again every pass (polls every 1 s) for the same value.
    await Bun.sleep(1200);
    expect(await fileIn(old.Id, "/run/secrets/sig_token")).toBe("good-1");
    expect(await hups()).toBe(2);
    await setSecret("sig_token", "good-3");
    await settled(name, "signalled with good-3", async () => (await fileIn(old.Id, "/dev/shm/seen")) === "good-3");
    expect(await hups()).toBe(3);
    // Proven healthy for the window: the kept previous version is pruned.
    await eventually("the kept version pruned", async () => ((await versionDirs()).length === 1 ? true : undefined), 20_000);
    expect(await fileIn(old.Id, "/run/secrets/sig_token")).toBe("good-3");
  }, 60_000);
});
