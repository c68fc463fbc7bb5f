import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { deliverToContainer } from "../../src/delivery/deliver.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import { daemonDirs, diffUnder, execIn, findOnDisk, pairFiles, plantedValue, readWhileRotating, removeContainers, secretFile, startContainer, statIn, testDocker } from "./helpers.ts";

const TARGET = "/run/secrets";
let daemon: TestDocker;
let docker: Dockerode;
const containers: Dockerode.Container[] = [];
const volumes: string[] = [];

async function tmpfsVolume(): Promise<string> {
  const name = `dso-test-vol-${crypto.randomUUID().slice(0, 8)}`;
  await docker.createVolume({ Name: name, Driver: "local", DriverOpts: { type: "tmpfs", device: "tmpfs", o: "size=4m" } });
  volumes.push(name);
  return name;
}

async function containerWithVolume(): Promise<Dockerode.Container> {
  const volume = await tmpfsVolume();
  const container = await startContainer(docker, { mounts: [{ Type: "volume", Source: volume, Target: TARGET }] });
  containers.push(container);
  return container;
}

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
});
afterAll(async () => {
  await removeContainers(containers);
  await Promise.all(volumes.map((v) => docker.getVolume(v).remove().catch(() => undefined)));
});

describe("volume mode (putArchive into a tmpfs volume)", () => {
  test("the file appears with its content, mode and owner; docker diff and the disk stay clean", async () => {
    const container = await containerWithVolume();
    const value = plantedValue("volume");
    const result = await deliverToContainer(docker, container.id, TARGET, [secretFile("db_password", value, { mode: 0o440, uid: 65534, gid: 65534 })]);
    expect(result).toMatchObject({ mode: "volume", targetPath: TARGET, files: ["db_password"], bytes: value.length });
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/db_password`])).stdout).toBe(value);
    expect(await statIn(docker, container.id, `${TARGET}/db_password`)).toBe(`440 65534 65534 ${value.length}`);
    expect(await diffUnder(container, TARGET)).toEqual([]);
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });

  test("rotation wipes the previous version out of the volume and drops nothing the reader needs", async () => {
    const container = await containerWithVolume();
    const old = plantedValue("old");
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", old)]);
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", "new")]);
    const grep = await execIn(docker, container.id, ["grep", "-rl", old, TARGET]);
    expect(grep.stdout).toBe("");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`])).stdout).toBe("new");
    const listing = (await execIn(docker, container.id, ["ls", "-a", TARGET])).stdout.split(/\s+/).filter(Boolean).sort();
    expect(listing).toEqual([".", "..", "..data", "..dso_slot_a", "..dso_slot_b", "k"].sort());
  });

  test("a reader looping over two files through ..data never sees a mixed pair", async () => {
    const container = await containerWithVolume();
    await deliverToContainer(docker, container.id, TARGET, pairFiles(1));
    const report = await readWhileRotating(docker, container.id, TARGET, 2, (n) => deliverToContainer(docker, container.id, TARGET, pairFiles(n)));
    // At least two switches while the reader ran, so the check is not vacuous (how many depends on load).
    expect(report.rotations).toBeGreaterThan(1);
    expect(report.reads).toBeGreaterThan(10);
    expect(report.mixed).toBe(0);
  });
});
