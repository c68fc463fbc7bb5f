import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { deliverToContainer } from "../../src/delivery/deliver.ts";
import { pickDeliveryMode } from "../../src/delivery/mode-picker.ts";
import { execMode } from "../../src/delivery/modes/exec.ts";
import type { TestDocker } from "../support/docker-daemon.ts";
import { daemonDirs, diffUnder, execIn, findAllOnDisk, findOnDisk, pairFiles, plantedValue, readWhileRotating, removeContainers, secretFile, startContainer, statIn, testDocker } from "./helpers.ts";

const TARGET = "/run/secrets";
let daemon: TestDocker;
let docker: Dockerode;
const containers: Dockerode.Container[] = [];

async function tmpfsContainer(): Promise<Dockerode.Container> {
  const container = await startContainer(docker, { tmpfs: { [TARGET]: "size=4m,mode=0755" } });
  containers.push(container);
  return container;
}

beforeAll(async () => {
  daemon = await testDocker();
  docker = daemon.docker;
});
afterAll(() => removeContainers(containers));

describe("exec mode (tar -x inside a --tmpfs target)", () => {
  test("the file appears with its content, mode and owner; docker diff and the disk stay clean", async () => {
    const container = await tmpfsContainer();
    const value = plantedValue("exec");
    const result = await deliverToContainer(docker, container.id, TARGET, [secretFile("api_key", value, { mode: 0o400, uid: 65534, gid: 65534 })]);
    expect(result).toMatchObject({ mode: "exec", files: ["api_key"], bytes: value.length });
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/api_key`])).stdout).toBe(value);
    expect(await statIn(docker, container.id, `${TARGET}/api_key`)).toBe(`400 65534 65534 ${value.length}`);
    expect(await diffUnder(container, TARGET)).toEqual([]);
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });

  test("names reach the container as arguments only: shell metacharacters are files, not commands", async () => {
    const container = await tmpfsContainer();
    const name = "$(touch pwned);`touch pwned2` 'q\" *";
    await deliverToContainer(docker, container.id, TARGET, [secretFile(name, "v")]);
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/${name}`])).stdout).toBe("v");
    const listing = await execIn(docker, container.id, ["ls", "-A", TARGET, "/"]);
    const entries = listing.stdout.split("\n");
    expect(entries).toContain(name);
    expect(entries).not.toContain("pwned");
    expect(entries).not.toContain("pwned2");
  });

  test("rotation switches versions, removes the old one and names no longer in the set", async () => {
    const container = await tmpfsContainer();
    const old = plantedValue("old");
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", old), secretFile("dropped", "x")]);
    await deliverToContainer(docker, container.id, TARGET, [secretFile("k", "new")]);
    expect((await execIn(docker, container.id, ["grep", "-rl", old, TARGET])).stdout).toBe("");
    const listing = (await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout.split(/\s+/).filter(Boolean);
    expect(listing).toHaveLength(3);
    expect(listing).toContain("k");
    expect(listing).toContain("..data");
    expect(listing).not.toContain("dropped");
  });

  test("keep previous, switch back, prune (signal rollback): the old files and names return, the failed version leaves; a kept version swapped for a link is refused", async () => {
    const container = await tmpfsContainer();
    const plan = await pickDeliveryMode(docker, container.id, TARGET);
    expect(plan.mode).toBe("exec");
    const versions = async () => (await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout.split(/\s+/).filter((e) => e.startsWith("..dso_"));
    const bad = plantedValue("bad");
    const previous = plantedValue("kept");
    await execMode.deliver(docker, plan, [secretFile("k", previous), secretFile("only1", "x")], undefined, "m1");
    const second = await execMode.deliver(docker, plan, [secretFile("k", bad), secretFile("only2", "y")], undefined, "m2", { keepPrevious: true });
    expect(second.kept).toMatch(/^\.\.dso_/);
    expect(await versions()).toHaveLength(2);
    // Kept on the tmpfs only: neither version is on disk, nor in docker diff.
    expect(await findAllOnDisk(daemonDirs(daemon), [previous, bad])).toEqual(new Map([[previous, []], [bad, []]]));
    expect(await diffUnder(container, TARGET)).toEqual([]);
    await execMode.restore!(docker, plan, second.kept!);
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`, `${TARGET}/only1`])).stdout).toBe(`${previous}x`);
    expect((await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout).not.toContain("only2");
    expect(await versions()).toEqual([second.kept!]);
    expect((await execIn(docker, container.id, ["grep", "-rl", bad, TARGET])).stdout).toBe("");
    expect(await execMode.readMarker(docker, plan)).toBe("m1");
    // Proven: prune leaves only the current version.
    const third = await execMode.deliver(docker, plan, [secretFile("k", "new")], undefined, "m3", { keepPrevious: true });
    await execMode.prune!(docker, plan);
    expect(await versions()).toHaveLength(1);
    // The container swaps the kept version for a link: refused, ..data unchanged.
    const fourth = await execMode.deliver(docker, plan, [secretFile("k", "newer")], undefined, "m4", { keepPrevious: true });
    expect(fourth.kept).toMatch(/^\.\.dso_/);
    await execIn(docker, container.id, ["sh", "-c", `rm -rf "${TARGET}/${fourth.kept}" && ln -s /etc "${TARGET}/${fourth.kept}"`]);
    await expect(execMode.restore!(docker, plan, fourth.kept!)).rejects.toThrow("cannot be restored");
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/k`])).stdout).toBe("newer");
    expect(third.kept).toBeDefined();
  });

  test("a reader looping over two files never sees a mixed pair or a missing file", async () => {
    const container = await tmpfsContainer();
    await deliverToContainer(docker, container.id, TARGET, pairFiles(1));
    const report = await readWhileRotating(docker, container.id, TARGET, 2, (n) => deliverToContainer(docker, container.id, TARGET, pairFiles(n)));
    // At least two switches while the reader ran, so the check is not vacuous (how many depends on load).
    expect(report.rotations).toBeGreaterThan(1);
    expect(report.mixed).toBe(0);
    expect(report.broken).toBe(0);
  });
});

describe("exec mode with many names", () => {
  const COUNT = 100;
  const many = (n: number) => Array.from({ length: COUNT }, (_, i) => secretFile(`f_${i}`, `${n}\n`));
  const ROTATIONS = 3;
  /** $1 dir, until /tmp/stop exists: a snapshot through ..data must hold one version; every name must always be there. */
  const MANY_READER = `d=$1; reads=0; mixed=0; missing=0
while [ ! -e /tmp/stop ]; do
  reads=$((reads + 1))
  versions=$(cd "$d/..data" 2>/dev/null && cat f_* 2>/dev/null | sort -u | wc -l)
  if [ "\${versions:-0}" -gt 1 ]; then mixed=$((mixed + 1)); fi
  lines=$(cat "$d"/f_* 2>/dev/null | wc -l)
  if [ "$lines" -ne ${COUNT} ]; then missing=$((missing + 1)); fi
done
echo "reads=$reads mixed=$mixed missing=$missing"
`;

  test("100 names switch in one step: never two versions through ..data, never a missing name, no staging left", async () => {
    const container = await tmpfsContainer();
    await deliverToContainer(docker, container.id, TARGET, many(1));
    // A fixed number of switches under a reader that runs until told to stop: no timing in the test.
    const reader = execIn(docker, container.id, ["sh", "-c", MANY_READER, "reader", TARGET]);
    for (let n = 2; n <= ROTATIONS + 1; n++) await deliverToContainer(docker, container.id, TARGET, many(n));
    await execIn(docker, container.id, ["touch", "/tmp/stop"]);
    const last = (await reader).stdout.trim().split("\n").at(-1) ?? "";
    const field = (key: string) => Number(new RegExp(`${key}=(\\d+)`).exec(last)?.[1] ?? Number.NaN);
    expect(field("reads")).toBeGreaterThan(1);
    expect(field("mixed")).toBe(0);
    expect(field("missing")).toBe(0);
    const entries = (await execIn(docker, container.id, ["ls", "-A", TARGET])).stdout.split(/\s+/).filter(Boolean);
    expect(entries).toHaveLength(COUNT + 2);
    expect(entries.filter((entry) => entry.startsWith("..dso_"))).toHaveLength(1);
    expect((await execIn(docker, container.id, ["cat", `${TARGET}/f_99`])).stdout).toBe(`${ROTATIONS + 1}\n`);
  });
});

describe("exec mode refusals", () => {
  test("a target reached through a symlink that leaves the tmpfs is refused, and nothing lands on disk", async () => {
    const container = await tmpfsContainer();
    await execIn(docker, container.id, ["ln", "-s", "/tmp", `${TARGET}/to-disk`]);
    const value = plantedValue("exec-link");
    const attempt = deliverToContainer(docker, container.id, `${TARGET}/to-disk`, [secretFile("x", value)]);
    await expect(attempt).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
    expect((await execIn(docker, container.id, ["ls", "-A", "/tmp"])).stdout).toBe("");
    expect(await findOnDisk(daemonDirs(daemon), value)).toEqual([]);
  });
});
