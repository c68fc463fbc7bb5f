// src/os/libc.ts: mount(2)/umount2(2) and mlock(2) through bun:ffi, and errors that name the call and errno.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRamBacked } from "../../src/delivery/tmpfs.ts";
import { copyFileSync } from "node:fs";
import { ERRNO, LibcError, libcAvailable, lockMemory, memlockLimit, MNT_DETACH, mountTmpfs, unlockMemory, unmount } from "../../src/os/libc.ts";

const dir = mkdtempSync(join(tmpdir(), "dso-libc-"));
afterAll(() => {
  Bun.spawnSync(["umount", "-l", dir], { stderr: "ignore" });
  rmSync(dir, { recursive: true, force: true });
});

function mountLine(path: string): string | undefined {
  return readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((line) => line.split(" ")[4] === path);
}

describe("libc through bun:ffi", () => {
  test("loads the C library", () => {
    expect(libcAvailable()).toBe(true);
  });

  test("mountTmpfs mounts a tmpfs with the given options and nosuid,nodev,noexec; unmount removes it", async () => {
    mountTmpfs(dir, "mode=0711,size=1m");
    const line = mountLine(dir);
    expect(line).toContain(" - tmpfs ");
    expect(line).toMatch(/nosuid,nodev,noexec/);
    expect(line).toContain("size=1024k");
    expect(await isRamBacked(dir)).toBe(true);
    unmount(dir, MNT_DETACH);
    expect(mountLine(dir)).toBeUndefined();
  });

  test("a failing call throws LibcError with the call, the errno and the kernel's message", () => {
    const missing = join(dir, "does-not-exist");
    const error = (() => {
      try {
        mountTmpfs(missing, "size=1m");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(LibcError);
    expect((error as LibcError).errno).toBe(ERRNO.ENOENT);
    expect((error as LibcError).message).toBe(`mount(tmpfs, ${missing}) failed: No such file or directory (ENOENT)`);
    expect(() => unmount(dir)).toThrow(/umount2\(.*\) failed: Invalid argument \(EINVAL\)/);
  });
});

/** This process's locked memory in KiB (VmLck in /proc/self/status). */
function lockedKiB(): number {
  return Number(/VmLck:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]);
}

describe("mlock through bun:ffi", () => {
  test("lockMemory locks the pages of a 64 KiB buffer (VmLck grows); unlockMemory gives them back", () => {
    const buffer = new Uint8Array(64 * 1024);
    const before = lockedKiB();
    expect(lockMemory(buffer)).toBe(true);
    const locked = lockedKiB();
    // Whole pages holding the range: 64 KiB, plus one page when the buffer does not start on one.
    expect(locked - before).toBeGreaterThanOrEqual(64);
    expect(locked - before).toBeLessThanOrEqual(64 + 64);
    expect(unlockMemory(buffer)).toBe(true);
    expect(lockedKiB()).toBe(before);
  });

  test("an empty buffer is nothing to lock", () => {
    expect(lockMemory(new Uint8Array(0))).toBe(true);
    expect(unlockMemory(new Uint8Array(0))).toBe(true);
  });

  test("memlockLimit reads RLIMIT_MEMLOCK", () => {
    const limit = memlockLimit();
    expect(limit).toBeDefined();
    const fromProc = /Max locked memory\s+(\S+)\s+(\S+)/.exec(readFileSync("/proc/self/limits", "utf8"))!;
    expect(limit!.soft === undefined ? "unlimited" : String(limit!.soft)).toBe(fromProc[1]!);
  });

  test("where RLIMIT_MEMLOCK refuses (a user with limit 0), lockMemory says false and does not throw", () => {
    // A copy of the module where user nobody can read it; it imports nothing but bun:ffi.
    const copy = join(dir, "libc.ts");
    copyFileSync(join(import.meta.dir, "../../src/os/libc.ts"), copy);
    const script = join(dir, "lock.ts");
    writeFileSync(script, `import { lockMemory } from "./libc.ts";\nconsole.log(JSON.stringify(lockMemory(new Uint8Array(64 * 1024))));\n`);
    // And a copy of bun: the checkout's own (node_modules/bun) may sit under a 0700 directory.
    const bun = join(dir, "bun");
    copyFileSync(process.execPath, bun);
    Bun.spawnSync(["chmod", "755", dir, bun]);
    const run = (limitKiB: number) =>
      Bun.spawnSync(["sh", "-c", `ulimit -l ${limitKiB} && exec "$0" "$1"`, bun, script], { uid: 65534, gid: 65534, cwd: dir, env: { PATH: process.env.PATH ?? "" } });
    const refused = run(0);
    expect(refused.stderr.toString()).toBe("");
    expect(refused.stdout.toString().trim()).toBe("false");
    // Positive control: the same user with room to lock gets true.
    expect(run(1024).stdout.toString().trim()).toBe("true");
  });
});
