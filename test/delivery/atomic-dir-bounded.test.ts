/**
 * Issue 18 finding 9: the atomic writer's scan of a target directory the container controls is
 * bounded. On a private tmpfs (as a container's --tmpfs target): a directory with more foreign
 * entries than MAX_TARGET_ENTRIES is refused before anything is written, with a clear error, and
 * the writer's memory does not grow with the entries; a few thousand foreign entries are left
 * alone and the rotation still removes its own stale version and links.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readlinkSync, symlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeAtomicDir } from "../../src/delivery/atomic-dir.ts";
import type { SecretFile } from "../../src/delivery/types.ts";

/** MAX_TARGET_ENTRIES in atomic-dir.ts (spelled out so this test also runs against code without it). */
const LIMIT = 10_000;
const secret = (name: string, value: string): SecretFile => ({ name, content: new TextEncoder().encode(value), mode: 0o400, uid: 0, gid: 0 });

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "dso-atomic-bounded-"));
  expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=400k", "tmpfs", base]).exitCode).toBe(0);
});
afterAll(async () => {
  Bun.spawnSync(["umount", "-l", base]);
  await rm(base, { recursive: true, force: true });
});

function dirWith(name: string, entries: number, kind: "file" | "link"): string {
  const dir = join(base, name);
  mkdirSync(dir);
  if (kind === "file") {
    expect(Bun.spawnSync(["sh", "-c", `cd "$0" && seq -f junk%.0f 0 ${entries - 1} | xargs touch`, dir]).exitCode).toBe(0);
    return dir;
  }
  for (let i = 0; i < entries; i++) {
    const path = join(dir, `junk${i}`);
    symlinkSync(`..data/junk${i}`, path);
  }
  return dir;
}

describe("the atomic writer's scan is bounded", () => {
  test("30,000 foreign entries (3x the limit): refused before writing, naming the limit; memory stays flat", async () => {
    const dir = dirWith("full", 30_000, "file");
    Bun.gc(true);
    const before = process.memoryUsage().rss;
    const started = performance.now();
    const error = await writeAtomicDir(dir, [secret("k", "v")]).then(() => undefined, (e: Error) => e);
    const ms = performance.now() - started;
    const grewMiB = (process.memoryUsage().rss - before) / 2 ** 20;
    console.log(`30,000 entries: ${error?.message} in ${Math.round(ms)} ms, RSS +${grewMiB.toFixed(1)} MiB`);
    expect(error?.message).toContain(`more than ${LIMIT.toLocaleString("en-US")} entries`);
    expect((error as { code?: string }).code).toBe("DELIVERY_REFUSED");
    expect(readdirSync(dir).filter((e) => e.startsWith("..") || e === "k")).toEqual([]);
    expect(grewMiB).toBeLessThan(32);
    expect(ms).toBeLessThan(1000);
  }, 60_000);

  test("2,000 foreign files and links are left alone; a rotation removes only its own stale entries", async () => {
    const dir = dirWith("some", 1000, "file");
    for (let i = 0; i < 1000; i++) symlinkSync("elsewhere", join(dir, `other-link${i}`));
    symlinkSync("..data/planted-link", join(dir, "planted-link"));
    const first = await writeAtomicDir(dir, [secret("k", "v1"), secret("gone", "x")]);
    const second = await writeAtomicDir(dir, [secret("k", "v2")]);
    const entries = readdirSync(dir);
    expect(entries).not.toContain(first.version);
    expect(entries).toContain(second.version);
    expect(entries).not.toContain("gone");
    expect(readlinkSync(join(dir, "k"))).toBe("..data/k");
    expect(entries.filter((e) => e.startsWith("junk"))).toHaveLength(1000);
    expect(entries.filter((e) => e.startsWith("other-link"))).toHaveLength(1000);
    // A link into ..data that DSO did not make for a current name is a stale name link: removed, as before.
    expect(entries).not.toContain("planted-link");
  });
});
