import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { deliverToContainer, deliverWithPlan } from "../../src/delivery/deliver.ts";
import { pickDeliveryMode } from "../../src/delivery/mode-picker.ts";
import type { DeliveryPlan } from "../../src/delivery/types.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import { NOTAR_IMAGE } from "../support/test-images.ts";
import { daemonDirs, diffUnder, execIn, findOnDisk, pairFiles, plantedValue, readWhileRotating, removeContainers, secretFile, startContainer, statIn, testDocker } from "./helpers.ts";

const TARGET = "/run/secrets";
let daemon: TestDocker;
let docker: Dockerode;
let hostDir: string;
const containers: Dockerode.Container[] = [];
const noDocker = new Proxy({} as Dockerode, {
  get(_target, property) {
    throw new Error(`unexpected Docker call: ${String(property)}`);
  },
});

async function tmpfsContainer(image = NOTAR_IMAGE): Promise<{ container: Dockerode.Container; pid: number }> {
  const container = await startContainer(docker, { image, tmpfs: { [TARGET]: "size=4m,mode=0755" } });
  containers.push(container);
  const info = await container.inspect();
  return { container, pid: info.State.Pid };
}

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
  hostDir = await mkdtemp("/tmp/dso-escape-");
});
afterAll(async () => {
  await removeContainers(containers);
  await rm(hostDir, { recursive: true, force: true });
});

describe("procfs mode (/proc/<pid>/root, image without tar)", () => {
  test("is picked for an image without tar, and the file appears with content, mode and owner; diff and disk clean", async () => {
    const { container } = await tmpfsContainer();
    const value = plantedValue("procfs");
    const result = await deliverToContainer(docker, container.id, TARGET, [secretFile("token", value, { mode: 0o440, uid: 65534, gid: 0 })]);
    expect(result).toMatchObject({ mode: "procfs", files: ["token"], bytes: value.length });
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/token`])).stdout).toBe(value);
    const listing = (await execIn(docker, container.id, ["ls", "-lnL", `${TARGET}/token`])).stdout;
    expect(listing).toMatch(/^-r--r-----\s+\d+\s+65534\s+0\s/);
    expect(await diffUnder(container, TARGET)).toEqual([]);
    expect(await findOnDisk([...daemonDirs(daemon), hostDir], value)).toEqual([]);
  });

  test.each([
    ["an absolute link to a host path", () => `${hostDir}/abs`],
    ["a relative link climbing out of the root", () => `../../../../../../../../..${hostDir}/rel`],
  ])("a planted symlink (%s) in the target path is refused and nothing reaches the host", async (_label, linkTarget) => {
    const { container, pid } = await tmpfsContainer();
    const target = linkTarget();
    await mkdir(target.replace(/^(\.\.\/)+/, "/"), { recursive: true });
    // What a hostile process in the container would do: point a directory under the tmpfs at the host.
    await symlink(target, `/proc/${pid}/root${TARGET}/sub`);
    const attempt = deliverToContainer(docker, container.id, `${TARGET}/sub`, [secretFile("x", plantedValue("escape"))]);
    await expect(attempt).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
    expect(await readdir(hostDir, { recursive: true })).not.toContainEqual(expect.stringContaining("x"));
    expect((await readdir(`${hostDir}/abs`).catch(() => [])).length + (await readdir(`${hostDir}/rel`).catch(() => [])).length).toBe(0);
  });

  test("a link that stays inside the container but leaves the tmpfs is refused as disk-backed", async () => {
    const { container, pid } = await tmpfsContainer();
    await symlink("/tmp", `/proc/${pid}/root${TARGET}/to-disk`);
    const attempt = deliverToContainer(docker, container.id, `${TARGET}/to-disk`, [secretFile("x", "v")]);
    await expect(attempt).rejects.toThrow("not on tmpfs");
    expect((await execIn(docker, container.id, ["ls", "-A", "/tmp"])).stdout).toBe("");
  });

  test("a reader looping over two files never sees a mixed pair or a missing file", async () => {
    // busybox image for the reader's date/set; the mode is forced to procfs.
    const { container, pid } = await tmpfsContainer("dso-test/busybox:1");
    const plan: DeliveryPlan = { containerId: container.id, targetPath: TARGET, mode: "procfs", reason: "test", pid };
    await deliverWithPlan(docker, plan, pairFiles(1));
    const report = await readWhileRotating(docker, container.id, TARGET, 2, (n) => deliverWithPlan(docker, plan, pairFiles(n)));
    // At least two switches while the reader ran, so the check is not vacuous (how many depends on load).
    expect(report.rotations).toBeGreaterThan(1);
    expect(report.mixed).toBe(0);
    expect(report.broken).toBe(0);
    expect(await statIn(docker, container.id, `${TARGET}/a`)).toMatch(/^400 65534 65534 /);
  });

  // A wave over 1,000 containers made 1,000 inspects just to re-check each PID. The check now reads
  // the process's start time from /proc (recorded when the plan was made): no Docker call.
  test("a delivery on a plan makes no Docker call; a plan whose PID is now another process, or gone, is refused", async () => {
    const { container } = await tmpfsContainer();
    const plan = await pickDeliveryMode(docker, container.id, TARGET, { preferProcfs: true });
    // A copy: bun's toMatchObject writes its asymmetric matchers into the object (oven-sh/bun#3521).
    expect({ ...plan }).toMatchObject({ mode: "procfs", pid: expect.any(Number), pidStart: expect.stringMatching(/^\d+$/) });
    const value = plantedValue("no-docker");
    await deliverWithPlan(noDocker, plan, [secretFile("token", value)], undefined, "v:1");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/token`])).stdout).toBe(value);

    // What a reused PID looks like: the same number, another process (another start time).
    const reused = { ...plan, pidStart: String(Number(plan.pidStart) + 1) };
    await expect(deliverWithPlan(noDocker, reused, [secretFile("token", "other")], undefined, "v:2")).rejects.toThrow("restarted");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/token`])).stdout).toBe(value);

    await container.stop({ t: 0 });
    await expect(deliverWithPlan(noDocker, plan, [secretFile("token", "late")], undefined, "v:3")).rejects.toMatchObject({ code: "DELIVERY_FAILED" });
  });

  test("a plan without a recorded start time (made elsewhere) still re-checks the PID with Docker", async () => {
    const { container, pid } = await tmpfsContainer();
    const plan: DeliveryPlan = { containerId: container.id, targetPath: TARGET, mode: "procfs", reason: "test", pid };
    await expect(deliverWithPlan(noDocker, plan, [secretFile("token", "v")])).rejects.toThrow("unexpected Docker call");
    await deliverWithPlan(docker, plan, [secretFile("token", "v")]);
  });
});
