import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { readdir, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deliverToContainer, deliverWithPlan, MODES } from "../../src/delivery/deliver.ts";
import { pickDeliveryMode } from "../../src/delivery/mode-picker.ts";
import { TMPFS_MAGIC } from "../../src/delivery/tmpfs.ts";
import type { DeliveryPlan } from "../../src/delivery/types.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import {
  daemonDirs,
  diffUnder,
  execIn,
  findOnDisk,
  pairFiles,
  plantedValue,
  readCountWhileRotating,
  removeContainers,
  secretFile,
  startContainer,
  statIn,
  testDocker,
  tmpfsMountPoints,
} from "./helpers.ts";

const TARGET = "/run/secrets";
const FIXTURE = join(import.meta.dir, "fixtures", "deliver-volume.ts");
let daemon: TestDocker;
let docker: Dockerode;
const containers: Dockerode.Container[] = [];
const volumes: string[] = [];

async function tmpfsVolume(driverOpts: Record<string, string> = { type: "tmpfs", device: "tmpfs", o: "size=4m" }): Promise<string> {
  const name = `dso-test-vol-${crypto.randomUUID().slice(0, 8)}`;
  await docker.createVolume({ Name: name, Driver: "local", DriverOpts: driverOpts });
  volumes.push(name);
  return name;
}

async function containerWithVolume(): Promise<{ container: Dockerode.Container; volume: string }> {
  const volume = await tmpfsVolume();
  const container = await startContainer(docker, { mounts: [{ Type: "volume", Source: volume, Target: TARGET }] });
  containers.push(container);
  return { container, volume };
}

async function mountpointOf(volume: string): Promise<string> {
  return ((await docker.getVolume(volume).inspect()) as { Mountpoint: string }).Mountpoint;
}

async function listing(container: Dockerode.Container): Promise<string[]> {
  return (await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout.split(/\s+/).filter(Boolean).sort();
}

/** A Docker client that fails the test on any use: proves a read needs no Docker call. */
const noDocker = new Proxy({} as Dockerode, {
  get(_target, property) {
    throw new Error(`unexpected Docker call: ${String(property)}`);
  },
});

/** Runs the fixture in a new mount namespace with the data root's volumes hidden (and, with `pid`, the host's processes). */
async function deliverInSandbox(containerId: string, value: string, opts: { hidePids: boolean }): Promise<{ route: string; mode: string }> {
  const pidFlags = opts.hidePids ? ["--pid", "--fork", "--mount-proc"] : [];
  const script = 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"';
  const proc = Bun.spawn(
    ["unshare", "--mount", "--propagation", "private", ...pidFlags, "--", "sh", "-c", script, "sandbox", join(daemon.dataRoot, "volumes"), process.execPath, FIXTURE, containerId, TARGET, "k"],
    { env: { DOCKER_HOST: daemon.host, PATH: process.env.PATH ?? "" }, stdin: new TextEncoder().encode(value), stdout: "pipe", stderr: "pipe" },
  );
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`sandboxed delivery failed (${code}): ${err.trim().slice(-2000)}`);
  return JSON.parse(out.trim().split("\n").at(-1) ?? "{}");
}

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
});
afterAll(async () => {
  await removeContainers(containers);
  await Promise.all(volumes.map((v) => docker.getVolume(v).remove().catch(() => undefined)));
});

describe("volume mode at the volume's host mountpoint (agent on the host)", () => {
  test("writes at the mountpoint, which is the volume's tmpfs mount; content, mode, owner; nothing in docker diff or in the data root", async () => {
    const { container, volume } = await containerWithVolume();
    const plan = await pickDeliveryMode(docker, container.id, TARGET);
    const mountpoint = await mountpointOf(volume);
    expect(plan).toMatchObject({ mode: "volume", hostPath: mountpoint });
    // Independent of the agent's own check: the kernel lists a tmpfs mounted at that path.
    expect(tmpfsMountPoints().has(mountpoint)).toBe(true);
    expect((await statfs(mountpoint)).type).toBe(TMPFS_MAGIC);

    const value = plantedValue("volume");
    const result = await deliverWithPlan(docker, plan, [secretFile("db_password", value, { mode: 0o440, uid: 65534, gid: 65534 })]);
    expect(result).toMatchObject({ mode: "volume", targetPath: TARGET, files: ["db_password"], bytes: value.length });
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/db_password`])).stdout).toBe(value);
    expect(await statIn(docker, container.id, `${TARGET}/db_password`)).toBe(`440 65534 65534 ${value.length}`);
    expect(await diffUnder(container, TARGET)).toEqual([]);
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });

  test("rotation is atomic for ..data and for each name, removes the old version and dropped names", async () => {
    const { container } = await containerWithVolume();
    const old = plantedValue("old");
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", old), secretFile("dropped", "x")]);
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", "new")]);
    expect((await execIn(docker, container.id, ["grep", "-rl", old, TARGET])).stdout).toBe("");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`])).stdout).toBe("new");
    const entries = await listing(container);
    expect(entries).toHaveLength(3);
    expect(entries).toContain("..data");
    expect(entries).toContain("k");
    expect(entries).not.toContain("dropped");

    await deliverToContainer(docker, container.id, TARGET, pairFiles(1));
    const report = await readCountWhileRotating(docker, container.id, TARGET, 50, (n) => deliverToContainer(docker, container.id, TARGET, pairFiles(n)));
    expect(report.rotations).toBeGreaterThan(1);
    expect(report.reads).toBe(50);
    expect(report.mixed).toBe(0);
    // The archive API replaces a name by remove + create; the atomic writer renames over it.
    expect(report.broken).toBe(0);
  });

  test("the version marker reads back from the mountpoint with no Docker call", async () => {
    const { container } = await containerWithVolume();
    const plan = await pickDeliveryMode(docker, container.id, TARGET);
    expect(await MODES.volume.readMarker(noDocker, plan)).toBeUndefined();
    await deliverWithPlan(docker, plan, [secretFile("k", "v")], undefined, "v:one");
    expect(await MODES.volume.readMarker(noDocker, plan)).toBe("v:one");
    await deliverWithPlan(docker, plan, [secretFile("k", "w")], undefined, "v:two");
    expect(await MODES.volume.readMarker(noDocker, plan)).toBe("v:two");
  });

  test("after the container stopped, a stale plan refuses: nothing is written to the directory left on disk (scan with positive control)", async () => {
    const { container, volume } = await containerWithVolume();
    const plan = await pickDeliveryMode(docker, container.id, TARGET);
    await deliverWithPlan(docker, plan, [secretFile("k", "before")], undefined, "v:before");
    await container.stop({ t: 0 });
    const mountpoint = await mountpointOf(volume);
    expect(tmpfsMountPoints().has(mountpoint)).toBe(false);

    const value = plantedValue("stale");
    await expect(deliverWithPlan(docker, plan, [secretFile("k", value)], undefined, "v:stale")).rejects.toMatchObject({ code: "DELIVERY_FAILED" });
    expect(await MODES.volume.readMarker(noDocker, plan)).toBeUndefined();
    expect(await readdir(mountpoint)).toEqual([]);
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
    // Positive control: the same scan does find a value put in that directory (now on disk).
    const control = plantedValue("control");
    await writeFile(join(mountpoint, "control"), control);
    expect(await findOnDisk(daemonDirs(daemon), control)).toEqual([join(mountpoint, "control")]);
    await rm(join(mountpoint, "control"));
  });
});

describe("volume mode when the mountpoint is not visible", () => {
  test("through /proc/<pid>/root when the container's processes are visible (agent container with --pid host)", async () => {
    const { container } = await containerWithVolume();
    const value = plantedValue("proc");
    expect(await deliverInSandbox(container.id, value, { hidePids: false })).toMatchObject({ route: "proc", mode: "volume" });
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`])).stdout).toBe(value);
    const plan: DeliveryPlan = { containerId: container.id, targetPath: TARGET, mode: "volume", reason: "test", pid: (await container.inspect()).State.Pid };
    expect(await MODES.volume.readMarker(noDocker, plan)).toBe("v:sandbox");
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });

  test("refuses when neither the mountpoint nor the processes are visible: nothing here shows the volume is RAM-backed (its options do not prove it)", async () => {
    const { container } = await containerWithVolume();
    const value = plantedValue("archive");
    await expect(deliverInSandbox(container.id, value, { hidePids: true })).rejects.toThrow("DSO cannot check is RAM-backed from here");
    expect((await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout).toBe("");
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });

  test("archive fallback (writeVolumesDirectly off): slots alternate, the previous version, also one the atomic writer made, is wiped", async () => {
    const { container } = await containerWithVolume();
    const direct = plantedValue("direct");
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", direct)]);
    const archive = { writeVolumesDirectly: false };
    expect((await pickDeliveryMode(docker, container.id, TARGET, archive)).hostPath).toBeUndefined();
    const old = plantedValue("old");
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", old)], archive);
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", "new")], archive);
    expect((await execIn(docker, container.id, ["grep", "-rl", direct, TARGET])).stdout).toBe("");
    expect((await execIn(docker, container.id, ["grep", "-rl", old, TARGET])).stdout).toBe("");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`])).stdout).toBe("new");
    const entries = await listing(container);
    expect(entries).toContain("..dso_slot_a");
    expect(entries).toContain("..dso_slot_b");
  });

  test("a target below the volume's mount point goes by the archive API", async () => {
    const { container } = await containerWithVolume();
    await execIn(docker, container.id, ["mkdir", `${TARGET}/sub`]);
    const plan = await pickDeliveryMode(docker, container.id, `${TARGET}/sub`);
    expect(plan).toMatchObject({ mode: "volume" });
    expect(plan.hostPath).toBeUndefined();
    expect(plan.pid).toBeUndefined();
    await deliverWithPlan(docker, plan, [secretFile("k", "v")]);
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/sub/k`])).stdout).toBe("v");
  });
});
