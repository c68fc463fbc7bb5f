import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireSocketLock, lockPathFor } from "../../src/agent/socket-lock.ts";

/** Another agent in its first moments: it holds the lock and writes its PID only a little later. */
const SLOW_HOLDER = `
import { ftruncateSync, openSync, writeSync } from "node:fs";
import { tryLockExclusive } from ${JSON.stringify(join(import.meta.dir, "../../src/os/libc.ts"))};
const fd = openSync(process.argv[2], "a+", 0o600);
if (!tryLockExclusive(fd)) process.exit(3);
console.log("locked");
await Bun.sleep(200);
ftruncateSync(fd, 0);
writeSync(fd, process.pid + "\\n", 0);
await Bun.sleep(10_000);
`;

describe("one agent per socket", () => {
  test("a second lock on the same socket is refused with the holder's pid; released, it can be taken", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-lock-"));
    try {
      const socket = join(dir, "dso.sock");
      const first = acquireSocketLock(socket);
      expect(() => acquireSocketLock(socket)).toThrow(`another dso agent (pid ${process.pid}) is serving ${socket}`);
      first.release();
      const again = acquireSocketLock(socket);
      again.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a holder that has the lock but has not written its pid yet (over a killed agent's) is still named by pid", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-lock-"));
    const script = join(dir, "holder.ts");
    await Bun.write(script, SLOW_HOLDER);
    const socket = join(dir, "dso.sock");
    const killed = Bun.spawn(["true"]);
    await killed.exited;
    await Bun.write(lockPathFor(socket), `${killed.pid}\n`);
    const child = Bun.spawn([process.execPath, script, lockPathFor(socket)], { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toContain("locked");
      expect(() => acquireSocketLock(socket)).toThrow(`another dso agent (pid ${child.pid}) is serving ${socket}`);
    } finally {
      child.kill();
      await child.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
