/**
 * The atomic writer's "keep previous / switch back / prune" operations (signal rollback): a write
 * can keep the version `..data` pointed to before, `restoreAtomicVersion` switches back to it and
 * drops the failed one, `pruneAtomicDir` drops all but the current. The directory belongs to a
 * container, which may swap a kept version for a link: the switch-back must refuse it, never
 * follow it, and prune must only unlink it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pruneAtomicDir, readAtomicMarker, restoreAtomicVersion, writeAtomicDir } from "../../src/delivery/atomic-dir.ts";
import type { SecretFile } from "../../src/delivery/types.ts";

const enc = new TextEncoder();
const secret = (name: string, value: string): SecretFile => ({ name, content: enc.encode(value), mode: 0o400, uid: 65534, gid: 65534 });

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "dso-atomic-keep-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = join(base, crypto.randomUUID());
  await mkdir(dir);
  return dir;
}

const versionsIn = async (dir: string) => (await readdir(dir)).filter((e) => e.startsWith("..dso_")).sort();

describe("atomic directory: keep previous, switch back, prune", () => {
  test("a write with keepPrevious keeps the earlier version; switching back restores its files, names and marker and drops the new one", async () => {
    const dir = await freshDir();
    const first = await writeAtomicDir(dir, [secret("a", "one"), secret("only1", "x")], "m1");
    const second = await writeAtomicDir(dir, [secret("a", "two"), secret("only2", "y")], "m2", { keepPrevious: true });
    expect(second.kept).toBe(first.version);
    expect(await versionsIn(dir)).toEqual([first.version, second.version].sort());
    expect(await readFile(join(dir, "a"), "utf8")).toBe("two");
    expect(await readAtomicMarker(dir)).toBe("m2");

    await restoreAtomicVersion(dir, first.version);
    expect(await readlink(join(dir, "..data"))).toBe(first.version);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("one");
    expect(await readFile(join(dir, "only1"), "utf8")).toBe("x");
    expect((await readdir(dir)).includes("only2")).toBe(false);
    expect(await versionsIn(dir)).toEqual([first.version]);
    expect(await readAtomicMarker(dir)).toBe("m1");
  });

  test("prune drops the kept version and leaves the current one; at most one earlier version is ever kept", async () => {
    const dir = await freshDir();
    await writeAtomicDir(dir, [secret("a", "1")]);
    const second = await writeAtomicDir(dir, [secret("a", "2")], undefined, { keepPrevious: true });
    const third = await writeAtomicDir(dir, [secret("a", "3")], undefined, { keepPrevious: true });
    expect(third.kept).toBe(second.version);
    expect(await versionsIn(dir)).toEqual([second.version, third.version].sort());
    await pruneAtomicDir(dir);
    expect(await versionsIn(dir)).toEqual([third.version]);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("3");
    // Nothing earlier: nothing kept.
    const empty = await freshDir();
    expect((await writeAtomicDir(empty, [secret("a", "1")], undefined, { keepPrevious: true })).kept).toBeUndefined();
  });

  test("a kept version the container swapped for a link is refused, never followed: ..data stays, the link's target is untouched", async () => {
    const dir = await freshDir();
    const outside = join(base, `outside-${crypto.randomUUID()}`);
    await mkdir(outside);
    await writeFile(join(outside, "a"), "outside-value");
    const first = await writeAtomicDir(dir, [secret("a", "one")]);
    const second = await writeAtomicDir(dir, [secret("a", "two")], undefined, { keepPrevious: true });
    // The container replaces the kept version directory with a link (absolute, then relative).
    await rename(join(dir, first.version), join(dir, "moved-away"));
    for (const target of [outside, "moved-away"]) {
      await rm(join(dir, first.version), { force: true });
      await symlink(target, join(dir, first.version));
      await expect(restoreAtomicVersion(dir, first.version)).rejects.toThrow("cannot be restored");
      expect(await readlink(join(dir, "..data"))).toBe(second.version);
      expect(await readFile(join(dir, "a"), "utf8")).toBe("two");
    }
    // Prune unlinks the planted link and nothing behind it.
    await pruneAtomicDir(dir);
    expect(await versionsIn(dir)).toEqual([second.version]);
    expect(await readdir(outside)).toEqual(["a"]);
    expect(await readFile(join(outside, "a"), "utf8")).toBe("outside-value");
    expect(await readFile(join(dir, "moved-away", "a"), "utf8")).toBe("one");
  });

  test("only a version name is switched back to", async () => {
    const dir = await freshDir();
    await writeAtomicDir(dir, [secret("a", "one")]);
    for (const bad of ["../elsewhere", "..dso_x/../../etc", "plain"]) await expect(restoreAtomicVersion(dir, bad)).rejects.toThrow("invalid version name");
  });
});
