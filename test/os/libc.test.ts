// src/os/libc.ts: mount(2)/umount2(2) through bun:ffi, and errors that name the call and errno.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRamBacked } from "../../src/delivery/tmpfs.ts";
import { ERRNO, LibcError, libcAvailable, MNT_DETACH, mountTmpfs, unmount } from "../../src/os/libc.ts";

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
