import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireSocketLock } from "../../src/agent/socket-lock.ts";

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
});
