/** dso doctor finds a stale legacy driver socket (issue 22: moving to the managed plugin left one). */
import { expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkLegacyDrivers } from "../../src/doctor/legacy-drivers.ts";

test("a socket nothing listens on is named; a live one is not", async () => {
  const dir = await mkdtemp(join(tmpdir(), "dso-legacy-"));
  try {
    // A socket file left by a process that is gone.
    Bun.spawnSync(["python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(join(dir, "dso.sock"))})`]);
    const live = Bun.listen({ unix: join(dir, "live.sock"), socket: { data() {} } });
    try {
      const [check] = await checkLegacyDrivers(dir);
      expect(check?.status).toBe("warn");
      expect(check?.detail).toContain(join(dir, "dso.sock"));
      expect(check?.detail).not.toContain("live.sock");
      expect(check?.detail).toContain("restart dockerd");
    } finally {
      live.stop(true);
    }
    expect(await checkLegacyDrivers(join(dir, "absent"))).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
