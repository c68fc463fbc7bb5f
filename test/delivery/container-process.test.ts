import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerProcessStart, processStartTime } from "../../src/delivery/container-process.ts";

const proc = mkdtempSync(join(tmpdir(), "dso-fakeproc-"));
afterAll(() => rmSync(proc, { recursive: true, force: true }));
const ID = "a".repeat(64);

/** A fake /proc/<pid> with a stat line (command name `comm`, state, start time) and a cgroup file. */
function fakeProcess(pid: number, opts: { comm?: string; state?: string; start?: number; cgroup?: string }): void {
  mkdirSync(join(proc, String(pid)), { recursive: true });
  // Fields 3..22: state, then 18 fields, then the start time.
  const after = [opts.state ?? "S", ...Array.from({ length: 18 }, (_, i) => String(i + 1)), String(opts.start ?? 4242), "99", "100"];
  writeFileSync(join(proc, String(pid), "stat"), `${pid} (${opts.comm ?? "sh"}) ${after.join(" ")}\n`);
  writeFileSync(join(proc, String(pid), "cgroup"), opts.cgroup ?? `12:pids:/docker/${ID}\n0::/docker/${ID}\n`);
}

test("the start time is field 22, also when the command name holds spaces and ')'", async () => {
  fakeProcess(10, { comm: "a) b) (c", start: 777 });
  expect(await processStartTime(proc, 10)).toBe("777");
  expect(await processStartTime(proc, 11)).toBeUndefined();
});

test("an exited process (zombie, dead) has no start time: its root is gone", async () => {
  fakeProcess(12, { state: "Z" });
  fakeProcess(13, { state: "X" });
  expect(await processStartTime(proc, 12)).toBeUndefined();
  expect(await processStartTime(proc, 13)).toBeUndefined();
});

test("a container's process is recognised by its cgroup directory (cgroupfs, systemd, a private cgroup namespace)", async () => {
  fakeProcess(20, { start: 5 });
  fakeProcess(21, { cgroup: `0::/system.slice/docker-${ID}.scope\n` });
  fakeProcess(22, { cgroup: `0::/../../system.slice/docker-${ID}.scope\n` });
  expect(await containerProcessStart(proc, 20, ID)).toBe("5");
  expect(await containerProcessStart(proc, 21, ID)).toBe("4242");
  expect(await containerProcessStart(proc, 22, ID)).toBe("4242");
});

test("no start time when the cgroup is another container's, only contains the id, or the id is not one", async () => {
  fakeProcess(30, { cgroup: `0::/docker/${"b".repeat(64)}\n` });
  fakeProcess(31, { cgroup: `0::/docker/${ID}/nested\n` });
  fakeProcess(32, { cgroup: `0::/docker/x${ID}\n` });
  expect(await containerProcessStart(proc, 30, ID)).toBeUndefined();
  expect(await containerProcessStart(proc, 31, ID)).toBeUndefined();
  expect(await containerProcessStart(proc, 32, ID)).toBeUndefined();
  expect(await containerProcessStart(proc, 20, "abc")).toBeUndefined();
  expect(await containerProcessStart(proc, 0, ID)).toBeUndefined();
});
