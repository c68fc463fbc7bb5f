import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdtemp, rm } from "node:fs/promises";
import { deliverToContainer } from "../../src/delivery/deliver.ts";
import { pickDeliveryMode } from "../../src/delivery/mode-picker.ts";
import { packTar, versionEntries } from "../../src/delivery/tar.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import { NOTAR_IMAGE } from "../support/test-images.ts";
import { daemonDirs, findOnDisk, plantedValue, removeContainers, secretFile, startContainer, testDocker } from "./helpers.ts";

let daemon: TestDocker;
let docker: Dockerode;
let bindDir: string;
const containers: Dockerode.Container[] = [];
/** The disk-backed volume the refusal test mounts is created implicitly by dockerd. */
const volumes: string[] = [`dso-test-disk-${process.pid}`];

async function started(spec: Parameters<typeof startContainer>[1]): Promise<Dockerode.Container> {
  const container = await startContainer(docker, spec);
  containers.push(container);
  return container;
}

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
  bindDir = await mkdtemp("/tmp/dso-bind-");
});
afterAll(async () => {
  await removeContainers(containers);
  await Promise.all(volumes.map((v) => docker.getVolume(v).remove().catch(() => undefined)));
  await rm(bindDir, { recursive: true, force: true });
});

describe("mode picker", () => {
  test("the disk scan works: docker cp's putArchive into a --tmpfs target is found on disk (the bug DSO avoids)", async () => {
    const container = await started({ tmpfs: { "/run/secrets": "" } });
    const value = plantedValue("docker-cp");
    await container.putArchive(await packTar(versionEntries("leak", [secretFile("x", value)], new Date())), { path: "/run/secrets" });
    const hits = await findOnDisk(daemonDirs(daemon), value);
    expect(hits.length).toBeGreaterThan(0);
    expect(hits[0]).toContain(daemon.dataRoot);
  });

  test("picks exec for --tmpfs with tar, procfs without, volume for a tmpfs volume, and the deepest mount wins", async () => {
    const tarProbeCache = new Map<string, boolean>();
    const withTar = await started({ tmpfs: { "/run/secrets": "" } });
    expect((await pickDeliveryMode(docker, withTar.id, "/run/secrets/", { tarProbeCache })).mode).toBe("exec");
    const noTar = await started({ image: NOTAR_IMAGE, tmpfs: { "/run/secrets": "" } });
    const procfs = await pickDeliveryMode(docker, noTar.id, "/run/secrets/app", { tarProbeCache });
    expect(Object.fromEntries(tarProbeCache)).toEqual({ [withTar.id]: true, [noTar.id]: false });
    expect(procfs).toMatchObject({ mode: "procfs", targetPath: "/run/secrets/app" });
    expect(procfs.pid).toBeGreaterThan(0);

    const volume = `dso-test-pick-${crypto.randomUUID().slice(0, 8)}`;
    volumes.push(volume);
    await docker.createVolume({ Name: volume, DriverOpts: { type: "tmpfs", device: "tmpfs" } });
    const nested = await started({ tmpfs: { "/run": "" }, mounts: [{ Type: "volume", Source: volume, Target: "/run/secrets" }] });
    expect((await pickDeliveryMode(docker, nested.id, "/run/secrets")).mode).toBe("volume");
    expect((await pickDeliveryMode(docker, nested.id, "/run/other")).mode).toBe("exec");
  });

  test.each([
    ["the writable layer", () => ({}), "/run/secrets", "writable layer"],
    ["a bind mount", () => ({ binds: [`${bindDir}:/run/secrets`] }), "/run/secrets", "bind mount"],
    ["a disk-backed named volume", () => ({ mounts: [{ Type: "volume" as const, Source: `dso-test-disk-${process.pid}`, Target: "/run/secrets" }] }), "/run/secrets", "disk-backed"],
  ])("refuses a target in %s, saying how to fix the container", async (_label, spec, target, why) => {
    const container = await started(spec());
    const value = plantedValue("refused");
    const attempt = deliverToContainer(docker, container.id, target, [secretFile("x", value)]);
    await expect(attempt).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
    const message = await attempt.catch((e: Error) => e.message);
    expect(message).toContain(why);
    expect(message).toContain("add --tmpfs /run/secrets or a dso volume");
    expect(message).not.toContain("\n");
    expect(await findOnDisk([...daemonDirs(daemon), bindDir], value)).toEqual([]);
  });

  test("refuses a stopped container's --tmpfs target, and path traversal in the target or names", async () => {
    const container = await startContainer(docker, { tmpfs: { "/run/secrets": "" }, start: false });
    containers.push(container);
    await expect(deliverToContainer(docker, container.id, "/run/secrets", [secretFile("x", "v")])).rejects.toThrow("not running");
    await expect(deliverToContainer(docker, container.id, "/run/secrets/../../etc", [secretFile("x", "v")])).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
    await expect(deliverToContainer(docker, container.id, "/run/secrets", [secretFile("../../etc/passwd", "v")])).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
  });
});
