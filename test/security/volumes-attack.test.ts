/**
 * Attacks on DSO volumes (issue 18, findings 4, 5, 6 and two items of 10), against the real
 * daemon and the compiled agent; one agent serves every test but the pre-mounted-root one.
 * - 4: a host user (not root) cannot read a DSO volume's files on the host side, whatever their
 *   uid/mode; inside the container the app user reads them.
 * - 5: one container filling its DSO volume does not stop another volume's Mount or rotation.
 * - 6: a pre-mounted volume root open to others (1777, planted key and record) is refused.
 * - 10a: a paused container keeps its DSO-volume files through reconcile passes.
 * - 10b: a local volume that says type=tmpfs but binds a disk directory is refused for volume
 *   mode, and the secret is not written there.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { runDso } from "../support/dso-binary.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";
import { execIn, findOnDisk } from "../delivery/helpers.ts";

const DRIVER = `dso-va-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
const VALUE_DB = "volattack-planted-DB-7Qw2";
const VALUE_OTHER = "volattack-planted-OTHER-1Lm5";
const VALUE_OTHER_2 = "volattack-planted-OTHER-ROTATED-8Zk4";
const APP_UID = 1000;
const STRANGER_UID = 4321;

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let volumesRoot: string;
let agent: AgentProcess;
const containers: string[] = [];
const volumes: string[] = [];
const cleanups: Array<() => Promise<void>> = [];

async function dsoVolume(name: string, opts: Record<string, string>): Promise<string> {
  const full = `${name}-${process.pid}`;
  await docker.createVolume({ Name: full, Driver: DRIVER, DriverOpts: opts });
  volumes.push(full);
  return full;
}

async function run(name: string, mounts: Dockerode.MountSettings[], opts: { user?: string; labels?: Record<string, string>; script?: string } = {}): Promise<Dockerode.Container> {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", opts.script ?? "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
    ...(opts.user ? { User: opts.user } : {}),
    Labels: opts.labels ?? {},
    HostConfig: { NetworkMode: "none", Mounts: mounts },
  });
  containers.push(c.id);
  await c.start();
  return c;
}

const at = (volume: string, target = "/run/secrets"): Dockerode.MountSettings => ({ Type: "volume", Source: volume, Target: target }) as Dockerode.MountSettings;

/** `cat` as another host user: its exit code and output. */
function catAs(uid: number, path: string): { code: number; out: string } {
  const r = Bun.spawnSync(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "cat", path], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() };
}

function pluginCall(socket: string, route: string, body: object): Promise<{ Err?: string; Mountpoint?: string }> {
  return fetch(`http://dso/VolumeDriver.${route}`, { method: "POST", body: JSON.stringify(body), unix: socket } as RequestInit).then((r) => r.json() as Promise<{ Err?: string }>);
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-volattack-"));
  // As /run/dso is: anyone may walk down to the volume root, which must stop them itself.
  await chmod(dir, 0o755);
  volumesRoot = join(dir, "volumes");
  await mkdir(join(dir, "secrets"), { mode: 0o700 });
  await writeFile(join(dir, "secrets", "va_db"), VALUE_DB);
  await writeFile(join(dir, "secrets", "va_other"), VALUE_OTHER);
  await writeFile(
    join(dir, "dso.yaml"),
    [
      "providers:",
      "  local:",
      "    type: file",
      "    config:",
      `      path: ${join(dir, "secrets")}`,
      "agent:",
      `  volumes_root: ${volumesRoot}`,
      "  watch:",
      "    polling_interval: 1s",
      "secrets:",
      "  - name: va_db",
      "    provider: local",
      "  - name: va_other",
      "    provider: local",
      "",
    ].join("\n"),
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost, name: DRIVER });
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
});

afterAll(async () => {
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  for (const cleanup of cleanups) await cleanup().catch(() => {});
  await agent?.stop("SIGTERM");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-R", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
});

describe("finding 4: DSO-volume files are root-only on the host", () => {
  test("with uid=1000,mode=0400 the app user reads the file in the container, host uid 1000 cannot; with mode=0444 a stranger cannot", async () => {
    const owned = await dsoVolume("va-owned", { secrets: "va_db", uid: String(APP_UID), mode: "0400" });
    const c = await run("va-owned", [at(owned)], { user: String(APP_UID) });
    const inside = await execIn(docker, c.id, ["cat", "/run/secrets/va_db"]);
    expect(inside.stdout).toBe(VALUE_DB);
    const file = join(volumesRoot, owned, "va_db");
    // Positive control: the path is right, root on the host reads it.
    expect(Bun.spawnSync(["cat", file]).stdout.toString()).toBe(VALUE_DB);
    expect(catAs(APP_UID, file)).toMatchObject({ code: 1, out: "" });
    expect((await stat(volumesRoot)).mode & 0o077).toBe(0);

    const open = await dsoVolume("va-open", { secrets: "va_db", mode: "0444" });
    const c2 = await run("va-open", [at(open)], { user: String(STRANGER_UID + 1) });
    expect((await execIn(docker, c2.id, ["cat", "/run/secrets/va_db"])).stdout).toBe(VALUE_DB);
    expect(catAs(STRANGER_UID, join(volumesRoot, open, "va_db"))).toMatchObject({ code: 1, out: "" });
  });
});

describe("item 10a: a paused container keeps its DSO-volume files", () => {
  test("reconcile passes while it is paused leave its files in place", async () => {
    const vol = await dsoVolume("va-paused", { secrets: "va_db" });
    const c = await run("va-paused", [at(vol)]);
    expect((await execIn(docker, c.id, ["cat", "/run/secrets/va_db"])).stdout).toBe(VALUE_DB);
    await c.pause();
    try {
      for (let pass = 0; pass < 3; pass++) expect((await agent.cli(["sync"])).code).toBe(0);
    } finally {
      await c.unpause();
    }
    expect((await execIn(docker, c.id, ["cat", "/run/secrets/va_db"])).stdout).toBe(VALUE_DB);
  });
});

describe("item 10b: a local 'tmpfs' volume that binds a disk directory", () => {
  test("is refused for volume mode, and the secret does not reach the directory", async () => {
    const diskDir = await mkdtemp("/var/tmp/dso-va-disk-");
    cleanups.push(() => rm(diskDir, { recursive: true, force: true }));
    // Positive control: the scan finds a planted value in that directory.
    await writeFile(join(diskDir, "control"), VALUE_DB);
    expect(await findOnDisk([diskDir], VALUE_DB)).toEqual([join(diskDir, "control")]);
    await rm(join(diskDir, "control"));

    const name = `va-bind-${process.pid}`;
    await docker.createVolume({ Name: name, Driver: "local", DriverOpts: { type: "tmpfs", o: "bind", device: diskDir } });
    volumes.push(name);
    // Mounted at /run, delivered to /run/secrets: the picker's archive path (a sub-path of the volume).
    const c = await run("va-bind", [at(name, "/run")], {
      labels: { "dso.reloader": "true", "dso.secrets": "va_db" },
      script: "mkdir -p /run/secrets; trap 'exit 0' TERM; while true; do sleep 0.2; done",
    });
    await eventually("the container made /run/secrets", async () => (existsSync(join(diskDir, "secrets")) ? true : undefined), 10_000);
    const inject = await agent.cli(["inject", `va-bind-${process.pid}`]);
    expect(inject.code).not.toBe(0);
    expect(`${inject.stdout}${inject.stderr}`).toContain("not RAM-backed");
    await docker.getContainer(c.id).stop({ t: 0 });
    expect(await findOnDisk([diskDir], VALUE_DB)).toEqual([]);
  });
});

describe("finding 5: each DSO volume is bounded on its own", () => {
  test("a container that fills its volume does not stop another volume's Mount or rotation", async () => {
    const greedy = await dsoVolume("va-greedy", { secrets: "va_db" });
    const filler = await run("va-greedy", [at(greedy)]);
    cleanups.push(() => docker.getContainer(filler.id).remove({ force: true }).catch(() => undefined));
    const dd = await execIn(docker, filler.id, ["sh", "-c", "dd if=/dev/zero of=/run/secrets/fill bs=1M count=100 2>&1; df -k /run/secrets | tail -1"]);
    // The filler ran out of room in its own volume, long before 100 MiB.
    expect(dd.stdout).toContain("No space left on device");
    const sizeKiB = Number(dd.stdout.trim().split("\n").at(-1)!.trim().split(/\s+/)[1]);
    console.log(`[measured] a filled DSO volume holds ${sizeKiB} KiB`);
    expect(sizeKiB).toBeLessThan(8 * 1024);

    const other = await dsoVolume("va-other", { secrets: "va_other" });
    const reader = await run("va-other", [at(other)]);
    expect((await execIn(docker, reader.id, ["cat", "/run/secrets/va_other"])).stdout).toBe(VALUE_OTHER);
    await writeFile(join(dir, "secrets", "va_other"), VALUE_OTHER_2);
    await eventually(
      "rotation into the other volume",
      async () => ((await execIn(docker, reader.id, ["cat", "/run/secrets/va_other"])).stdout === VALUE_OTHER_2 ? true : undefined),
      15_000,
    );
    // Remove and its files go: no mount of the volume stays behind on the host.
    await docker.getContainer(filler.id).remove({ force: true });
    await eventually("greedy volume unmounted", async () => (existsSync(join(volumesRoot, greedy)) ? undefined : true), 10_000);
    const mounts = await Bun.file("/proc/self/mountinfo").text();
    expect(mounts).not.toContain(join(volumesRoot, greedy));
  });
});

describe("finding 6: a pre-mounted volume root open to others is refused", () => {
  test("a 1777 tmpfs root with a planted .version-key and volume record serves nothing; doctor says how to mount it", async () => {
    const root = await mkdtemp(join(tmpdir(), "dso-va-openroot-"));
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "mode=1777,size=4m", "tmpfs", root]).exitCode).toBe(0);
    cleanups.push(async () => {
      Bun.spawnSync(["umount", "-R", "-l", root]);
      await rm(root, { recursive: true, force: true });
    });
    // What a local user can do on such a root: plant the marker key and a volume record naming their uid.
    await writeFile(join(root, ".version-key"), Buffer.alloc(32, 7));
    await mkdir(join(root, ".options"));
    await writeFile(join(root, ".options", "steal.json"), JSON.stringify({ opts: { secrets: "va_db", uid: String(STRANGER_UID) } }));
    const config = join(dir, "open-root.yaml");
    await writeFile(config, (await Bun.file(join(dir, "dso.yaml")).text()).replace(`volumes_root: ${volumesRoot}`, `volumes_root: ${root}`));
    const second = await startAgent({ dir, config, dockerHost, name: `va-open-${process.pid}` });
    try {
      const reply = await pluginCall(second.socket, "Mount", { Name: "steal", ID: "x" });
      expect(reply.Err).toContain(`volume root ${root}`);
      expect(reply.Err).not.toContain("\n");
      expect(existsSync(join(root, "steal"))).toBe(false);
      expect((await second.cli(["status"])).code).toBe(0);
      expect(second.logs()).not.toContain(VALUE_DB);
      // The planted marker key is not taken: the agent keeps its key in memory only.
      expect(second.logs()).toContain("no tmpfs for the host key");
    } finally {
      await second.stop();
    }
    const doctor = await runDso(["doctor", "--config", config], { env: { PATH: process.env.PATH, DOCKER_HOST: dockerHost } });
    const advice = `${doctor.stdout}${doctor.stderr}`.replace(/\s+/g, " ");
    expect(advice).toContain(`plugin tmpfs FAIL ${root} is a tmpfs, but its mode 1777 lets others in`);
    expect(advice).toContain(`mount -t tmpfs -o mode=0700,size=64m,nosuid,nodev,noexec tmpfs ${root}`);
  });
});
