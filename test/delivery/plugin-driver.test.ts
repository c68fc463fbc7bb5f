import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { deliverToContainer } from "../../src/delivery/deliver.ts";
import { parseDriverOptions } from "../../src/delivery/plugin/driver-options.ts";
import { emptyFileEntry, packTar } from "../../src/delivery/tar.ts";
import { createVolumeDriver, type VolumeDriver } from "../../src/delivery/plugin/volume-driver.ts";
import { DsoError } from "../../src/errors.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE } from "../support/test-images.ts";
import { daemonDirs, diffUnder, execIn, findOnDisk, OWNER_LABEL, pairFiles, plantedValue, readWhileRotating, removeContainers, secretFile, startContainer, testDocker, tmpfsMountPoints } from "./helpers.ts";

const TARGET = "/run/secrets";
const PLUGIN_DIR = "/run/docker/plugins";
const DRIVER = `dso-test-${process.pid}`;
const SOCKET = `${PLUGIN_DIR}/${DRIVER}.sock`;

let daemon: TestDocker;
let docker: Dockerode;
let root: string;
let driver: VolumeDriver;
let server: ReturnType<typeof Bun.serve>;
const containers: Dockerode.Container[] = [];
const volumes: string[] = [];
/** What the fake "provider" holds; `resolveFiles` reads from it like the agent would. */
const store = new Map<string, string>();
const resolveCalls: Array<{ volume: string; callerId?: string }> = [];

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
  root = await mkdtemp("/tmp/dso-volroot-");
  expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0711", "tmpfs", root]).exitCode).toBe(0);
  driver = await createVolumeDriver({
    root,
    async resolveFiles(volume, opts, callerId) {
      resolveCalls.push({ volume, callerId });
      const { secrets, uid, gid, mode } = parseDriverOptions(opts);
      const files = secrets.map((name) => {
        const value = store.get(name);
        if (value === undefined) throw new DsoError("SECRET_NOT_FOUND", `secret ${name} was not found at provider test`);
        return { name, content: new TextEncoder().encode(value), uid, gid, mode };
      });
      return { files };
    },
  });
  await mkdir(PLUGIN_DIR, { recursive: true });
  await rm(SOCKET, { force: true });
  server = Bun.serve({
    unix: SOCKET,
    development: false,
    fetch: async (req) => (await driver.handle(req)) ?? new Response("not found", { status: 404 }),
  });
});

afterAll(async () => {
  await removeContainers(containers);
  await Promise.all(volumes.map((name) => docker.getVolume(name).remove({ force: true }).catch(() => undefined)));
  server?.stop(true);
  await rm(SOCKET, { force: true });
  Bun.spawnSync(["umount", "-l", root]);
  await rm(root, { recursive: true, force: true });
});

function volumeMount(volume: string, opts: Record<string, string>): Dockerode.MountSettings {
  volumes.push(volume);
  return { Type: "volume", Source: volume, Target: TARGET, VolumeOptions: { DriverConfig: { Name: DRIVER, Options: opts } } } as Dockerode.MountSettings;
}

function uniqueVolume(): string {
  return `dso-test-${crypto.randomUUID().slice(0, 8)}`;
}

async function runToCompletion(cmd: string[], mount: Dockerode.MountSettings): Promise<string> {
  const container = await docker.createContainer({ Image: BUSYBOX_IMAGE, Cmd: cmd, Tty: true, Labels: OWNER_LABEL, HostConfig: { NetworkMode: "none", Mounts: [mount] } });
  containers.push(container);
  await container.start();
  await container.wait();
  return (await container.logs({ stdout: true, stderr: true })).toString().replaceAll("\r\n", "\n");
}

describe("volume driver protocol", () => {
  test("activates as a VolumeDriver with local scope", async () => {
    const call = (path: string) => driver.handle(new Request(`http://localhost${path}`, { method: "POST", body: "{}" }));
    expect(await (await call("/Plugin.Activate"))?.json()).toEqual({ Implements: ["VolumeDriver"] });
    expect(await (await call("/VolumeDriver.Capabilities"))?.json()).toEqual({ Capabilities: { Scope: "local" } });
    expect(await call("/agent/status")).toBeUndefined();
  });

  test("refuses a bad volume name or option with an Err, not an exception", async () => {
    const create = (body: object) => driver.handle(new Request("http://localhost/VolumeDriver.Create", { method: "POST", body: JSON.stringify(body) }));
    expect(((await (await create({ Name: "../etc" }))?.json()) as { Err: string }).Err).toContain("valid volume name");
    expect(((await (await create({ Name: "ok", Opts: { mode: "rwx" } }))?.json()) as { Err: string }).Err).toContain("octal file mode");
  });

  test("a bad request's Err names the field and never echoes the value (a \\r reached dockerd's output; found by test/fuzz)", async () => {
    const get = async (body: string) => ((await (await driver.handle(new Request("http://localhost/VolumeDriver.Get", { method: "POST", body })))?.json()) as { Err: string }).Err;
    expect(await get(JSON.stringify("\r"))).toBe("dso: BAD_REQUEST: bad plugin request: \"body\": Expected Object");
    expect(await get(JSON.stringify({ Name: 7 }))).toBe("dso: BAD_REQUEST: bad plugin request: \"Name\": Expected string");
    expect(await get("{nope")).not.toMatch(/[\r\n]/);
  });

  test("a plugin request body past 64 KiB is refused without being read whole", async () => {
    const res = await driver.handle(new Request("http://localhost/VolumeDriver.Create", { method: "POST", body: JSON.stringify({ Name: "n".repeat(8 * 1024 * 1024) }) }));
    expect(((await res?.json()) as { Err: string }).Err).toBe("dso: BAD_REQUEST: request body larger than 65536 bytes");
  });

  test("refuses a root that is not on tmpfs", async () => {
    const diskDir = await mkdtemp("/tmp/dso-diskroot-");
    try {
      await expect(createVolumeDriver({ root: `${diskDir}/volumes`, resolveFiles: async () => ({ files: [] }) })).rejects.toThrow("not on tmpfs");
      expect(await readdir(diskDir)).toEqual([]);
    } finally {
      await rm(diskDir, { recursive: true, force: true });
    }
  });
});

describe("plugin mode on the real daemon", () => {
  test("the secret is in place before the entrypoint: `cat` as the command prints it first, with mode and owner", async () => {
    const printed = plantedValue("printed");
    // A second secret the container does not print: the printed one is in the container's log by design.
    const unprinted = plantedValue("plugin");
    store.set("x", printed);
    store.set("y", unprinted);
    const volume = uniqueVolume();
    const output = await runToCompletion(
      ["sh", "-c", `cat ${TARGET}/x; echo; stat -L -c "%a %u %g" ${TARGET}/x ${TARGET}/y`],
      volumeMount(volume, { secrets: "x,y", uid: "65534", gid: "65534", mode: "0440" }),
    );
    expect(output.split("\n")).toEqual([printed, "440 65534 65534", "440 65534 65534", ""]);
    expect(resolveCalls.some((call) => call.volume === volume)).toBe(true);
    // The container exited: dockerd unmounted the volume and the driver removed the files.
    expect(existsSync(`${root}/${volume}`)).toBe(false);
    expect(await findOnDisk([...daemonDirs(daemon), PLUGIN_DIR], unprinted)).toEqual([]);
  });

  test("a container whose secret is unavailable does not start, and dockerd's error carries DSO's message", async () => {
    const container = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", "echo started"],
      Labels: OWNER_LABEL,
      HostConfig: { NetworkMode: "none", Mounts: [volumeMount(uniqueVolume(), { secrets: "does-not-exist" })] },
    });
    containers.push(container);
    const error = await container.start().then(
      () => undefined,
      (e: unknown) => e as { json?: { message?: string }; message: string },
    );
    expect(error).toBeDefined();
    const message = error?.json?.message ?? error?.message ?? "";
    expect(message).toContain("dso: SECRET_NOT_FOUND: secret does-not-exist was not found at provider test");
    expect((await container.inspect()).State.Running).toBe(false);
  });

  test("rotation under a reader never shows a mixed pair; the picker finds the volume and diff/disk stay clean", async () => {
    store.set("a", "a:1");
    store.set("b", "b:1");
    const volume = uniqueVolume();
    const container = await startContainer(docker, { mounts: [volumeMount(volume, { secrets: "a,b", uid: "65534", gid: "65534" })] });
    containers.push(container);
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/a`])).stdout).toBe("a:1");

    const report = await readWhileRotating(docker, container.id, TARGET, 2, (n) => driver.rotate(volume, { files: pairFiles(n) }));
    // At least two switches while the reader ran, so the check is not vacuous (how many depends on load).
    expect(report.rotations).toBeGreaterThan(1);
    expect(report.mixed).toBe(0);
    expect(report.broken).toBe(0);

    const value = plantedValue("plugin-rotated");
    const result = await deliverToContainer(docker, container.id, TARGET, [secretFile("a", value), secretFile("b", "b")], { pluginDrivers: [DRIVER], pluginVolumeDir: driver.mountpointOf });
    expect(result.mode).toBe("plugin");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/a`])).stdout).toBe(value);
    expect(await diffUnder(container, TARGET)).toEqual([]);
    expect(await findOnDisk([...daemonDirs(daemon), PLUGIN_DIR], value)).toEqual([]);
  });

  test("files stay while any container uses the volume and go when the last one stops", async () => {
    store.set("shared", "s");
    const volume = uniqueVolume();
    const first = await startContainer(docker, { mounts: [volumeMount(volume, { secrets: "shared" })] });
    const second = await startContainer(docker, { mounts: [volumeMount(volume, { secrets: "shared" })] });
    containers.push(first, second);
    // dockerd mounts and unmounts the volume again, under the container's mount id, for archive calls.
    await first.putArchive(await packTar([emptyFileEntry("unrelated", new Date())]), { path: "/tmp" });
    await first.infoArchive({ path: "/tmp" });
    expect((await execIn(docker, first.id, ["cat", `${TARGET}/shared`])).stdout).toBe("s");
    await first.stop({ t: 0 });
    expect((await execIn(docker, second.id, ["cat", `${TARGET}/shared`])).stdout).toBe("s");
    expect(driver.mountedVolumes()).toContain(volume);
    await second.stop({ t: 0 });
    expect(driver.mountedVolumes()).not.toContain(volume);
    expect(existsSync(`${root}/${volume}`)).toBe(false);
  });
});

describe("volume records survive the driver (agent restart)", () => {
  test("a new driver on the same root answers Get, Path, Unmount and Remove for volumes of the old one", async () => {
    const recRoot = await mkdtemp("/tmp/dso-volrec-");
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0711", "tmpfs", recRoot]).exitCode).toBe(0);
    const call = async (d: Awaited<ReturnType<typeof createVolumeDriver>>, route: string, body: object) =>
      (await (await d.handle(new Request(`http://x/VolumeDriver.${route}`, { method: "POST", body: JSON.stringify(body) })))!.json()) as Record<string, unknown>;
    try {
      const resolveFiles = async () => ({ files: [{ name: "k", content: new TextEncoder().encode("rec-value"), uid: 0, gid: 0, mode: 0o400 }], marker: "dso1:aaaaaaaa=bbbbbbbbbbbb" });
      const first = await createVolumeDriver({ root: recRoot, resolveFiles });
      expect(await call(first, "Create", { Name: "recvol", Opts: { secrets: "k" } })).toEqual({ Err: "" });
      const mounted = await call(first, "Mount", { Name: "recvol", ID: "mount-1" });
      expect(mounted.Mountpoint).toBe(`${recRoot}/recvol`);
      // Its own tmpfs (issue 18, finding 5), which outlives the driver.
      expect(tmpfsMountPoints().has(`${recRoot}/recvol`)).toBe(true);
      await first.markSeen("recvol", "container-1", "dso1:aaaaaaaa=bbbbbbbbbbbb");

      const second = await createVolumeDriver({ root: recRoot, resolveFiles });
      expect(await call(second, "Path", { Name: "recvol" })).toEqual({ Mountpoint: `${recRoot}/recvol`, Err: "" });
      expect((await call(second, "Get", { Name: "recvol" })).Err).toBe("");
      expect(second.mountpointOf("recvol")).toBe(`${recRoot}/recvol`);
      const seen = await second.observe("recvol");
      expect(seen?.filesMarker).toBe("dso1:aaaaaaaa=bbbbbbbbbbbb");
      expect(seen?.seen.get("container-1")).toBe("dso1:aaaaaaaa=bbbbbbbbbbbb");
      expect(await second.rotate("recvol", { files: [{ name: "k", content: new TextEncoder().encode("rec-value-2"), uid: 0, gid: 0, mode: 0o400 }] })).toMatchObject({ mode: "plugin" });
      expect(await Bun.file(`${recRoot}/recvol/k`).text()).toBe("rec-value-2");
      expect(await call(second, "Unmount", { Name: "recvol", ID: "mount-1" })).toEqual({ Err: "" });
      expect(await readdir(recRoot)).not.toContain("recvol");
      expect(tmpfsMountPoints().has(`${recRoot}/recvol`)).toBe(false);
      expect(await call(second, "Remove", { Name: "recvol" })).toEqual({ Err: "" });
      expect((await call(second, "Get", { Name: "recvol" })).Err).toContain("no such volume");
    } finally {
      Bun.spawnSync(["umount", "-l", recRoot]);
      await rm(recRoot, { recursive: true, force: true });
    }
  });
});

describe("Create checks the options", () => {
  test("no secrets= or an unknown option is refused at Create with the option named", async () => {
    const root = await mkdtemp("/tmp/dso-volcreate-");
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0711", "tmpfs", root]).exitCode).toBe(0);
    try {
      const d = await createVolumeDriver({ root, resolveFiles: async () => ({ files: [] }) });
      const create = async (Opts: Record<string, string>) =>
        ((await (await d.handle(new Request("http://x/VolumeDriver.Create", { method: "POST", body: JSON.stringify({ Name: "v", Opts }) })))!.json()) as { Err: string });
      expect((await create({})).Err).toContain("secrets");
      expect((await create({ secrets: "a", colour: "blue" })).Err).toContain("colour");
      expect((await create({ secrets: "a", strategy: "signal" })).Err).toBe("");
    } finally {
      Bun.spawnSync(["umount", "-l", root]);
      await rm(root, { recursive: true, force: true });
    }
  });
});
