// needs root: files are given other owners (chown).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearAtomicDir, writeAtomicDir } from "../../src/delivery/atomic-dir.ts";
import type { SecretFile } from "../../src/delivery/types.ts";

const enc = new TextEncoder();
const secret = (name: string, value: string, extra: Partial<SecretFile> = {}): SecretFile => ({
  name,
  content: enc.encode(value),
  mode: 0o400,
  uid: 65534,
  gid: 65534,
  ...extra,
});

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "dso-atomic-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = join(base, crypto.randomUUID());
  await mkdir(dir);
  return dir;
}

describe("atomic directory writer", () => {
  test("writes the layout: version dir, ..data link, name links, with mode and owner", async () => {
    const dir = await freshDir();
    const { version, bytes } = await writeAtomicDir(dir, [secret("a", "one"), secret("b", "two", { mode: 0o440, uid: 1000, gid: 2000 })]);
    expect(bytes).toBe(6);
    expect(await readlink(join(dir, "..data"))).toBe(version);
    expect(await readlink(join(dir, "a"))).toBe("..data/a");
    expect(await readFile(join(dir, "a"), "utf8")).toBe("one");
    const b = await lstat(join(dir, version, "b"));
    expect(b.mode & 0o7777).toBe(0o440);
    expect([b.uid, b.gid]).toEqual([1000, 2000]);
    expect((await readdir(dir)).sort()).toEqual(["..data", version, "a", "b"].sort());
  });

  test("rotation replaces the version, drops names no longer in the set and keeps foreign files", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, "unrelated"), "user file");
    const first = await writeAtomicDir(dir, [secret("a", "1"), secret("gone", "x")]);
    const second = await writeAtomicDir(dir, [secret("a", "2"), secret("new", "n")]);
    expect(second.version).not.toBe(first.version);
    expect((await readdir(dir)).sort()).toEqual(["..data", second.version, "a", "new", "unrelated"].sort());
    expect(await readFile(join(dir, "a"), "utf8")).toBe("2");
  });

  test("a plain file in the way of a name is replaced by the link", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, "a"), "stale plain file");
    await writeAtomicDir(dir, [secret("a", "fresh")]);
    expect((await lstat(join(dir, "a"))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("fresh");
  });

  test("a planted ..data_tmp symlink is replaced, not followed", async () => {
    const dir = await freshDir();
    const victim = join(base, `victim-${crypto.randomUUID()}`);
    await mkdir(victim);
    await symlink(victim, join(dir, "..data_tmp"));
    await writeAtomicDir(dir, [secret("a", "v")]);
    expect(await readdir(victim)).toEqual([]);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("v");
  });

  test("a bad name is refused before anything is written", async () => {
    const dir = await freshDir();
    await expect(writeAtomicDir(dir, [secret("ok", "1"), secret("../escape", "2")])).rejects.toMatchObject({ code: "DELIVERY_REFUSED" });
    expect(await readdir(dir)).toEqual([]);
  });

  test("clear removes what the writer made and nothing else", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, "unrelated"), "keep");
    await writeAtomicDir(dir, [secret("a", "1")]);
    await clearAtomicDir(dir);
    expect(await readdir(dir)).toEqual(["unrelated"]);
  });
});

describe("atomic writer against a hostile directory", () => {
  test("stale-version cleanup never deletes through links the container planted", async () => {
    const dir = await freshDir();
    const host = await freshDir();
    await writeFile(join(host, "precious"), "host data");
    // A "version" that is a link to a host directory, and a real one holding a link to a host file.
    await symlink(host, join(dir, "..dso_planted_link"));
    await mkdir(join(dir, "..dso_planted_dir"));
    await symlink(join(host, "precious"), join(dir, "..dso_planted_dir", "inner"));
    await writeAtomicDir(dir, [secret("a", "1")]);
    expect(await readFile(join(host, "precious"), "utf8")).toBe("host data");
    expect(await readdir(host)).toEqual(["precious"]);
    expect(await readFile(join(dir, "a"), "utf8")).toBe("1");
  });

  test("a directory reached only through an fd path is written in place", async () => {
    const dir = await freshDir();
    const { open } = await import("node:fs/promises");
    const handle = await open(dir, "r");
    try {
      await writeAtomicDir(`/proc/self/fd/${handle.fd}`, [secret("b", "2")]);
    } finally {
      await handle.close();
    }
    expect(await readlink(join(dir, "b"))).toBe("..data/b");
    expect(await readFile(join(dir, "b"), "utf8")).toBe("2");
  });
});
