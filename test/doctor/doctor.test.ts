import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { activeSwaps, swapCheck, type SwapKind } from "../../src/doctor/checks.ts";
import { hasIpcLock, limitOf } from "../../src/doctor/hardening.ts";
import { dsoBinary, runDso } from "../support/dso-binary.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { startAgent } from "../support/agent-process.ts";

let dir: string;
let host: string;
beforeAll(async () => {
  host = (await ensureDocker()).host;
  dir = await mkdtemp(join(tmpdir(), "dso-doctor-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Report {
  ok: boolean;
  checks: Array<{ check: string; status: string; detail: string }>;
}

async function doctor(config: string, dockerHost: string): Promise<{ code: number; report: Report }> {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(path, config);
  const run = await runDso(["doctor", "--json", "--config", path], { env: { PATH: process.env.PATH, DOCKER_HOST: dockerHost } });
  return { code: run.code, report: JSON.parse(run.stdout) as Report };
}

describe("dso doctor (compiled binary, real daemon)", () => {
  test("reports the engine, its API version and the negotiated one; exit 0 when all pass", async () => {
    const { code, report } = await doctor(`agent:\n  socket: ${join(dir, "dso.sock")}\n`, host);
    const byName = Object.fromEntries(report.checks.map((c) => [c.check, c]));
    expect(byName["docker"]?.status).toBe("ok");
    expect(byName["docker engine"]?.detail).toMatch(/^engine 20\.10\.\S+, API 1\.41 \(min 1\.\d+\)$/);
    expect(byName["docker API"]?.detail).toBe("using API 1.41");
    expect(byName["socket directory"]?.status).toBe("ok");
    expect(byName["config"]?.status).toBe("ok");
    // No agent: doctor says what this binary can do here (root: CAP_IPC_LOCK; libc through bun:ffi).
    expect(byName["core dumps"]).toEqual({ check: "core dumps", status: "ok", detail: "no agent running; this binary turns core dumps off here (RLIMIT_CORE 0, PR_SET_DUMPABLE 0)" });
    expect(byName["memory locking"]?.status).toBe("ok");
    expect(byName["memory locking"]?.detail).toContain("CAP_IPC_LOCK");
    // The swap check is there (its warning is unit-tested below: this host may have no swap).
    expect(byName["swap"]?.detail).toBeString();
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
  });

  test("memory locking is a warning where RLIMIT_MEMLOCK is tiny and there is no CAP_IPC_LOCK", async () => {
    // User nobody with a 64 KiB limit (Docker's and old systemd's default); doctor and config readable to it.
    const open = await mkdtemp(join(tmpdir(), "dso-doctor-nobody-"));
    try {
      await chmod(open, 0o755);
      const config = join(open, "dso.yaml");
      await writeFile(config, `agent:\n  socket: ${join(open, "dso.sock")}\n`, { mode: 0o644 });
      // A copy nobody can reach: the checkout itself may sit under a 0700 directory (mktemp -d).
      const binary = join(open, "dso");
      await copyFile(await dsoBinary(), binary);
      await chmod(binary, 0o755);
      const run = Bun.spawnSync(["sh", "-c", 'ulimit -l 64 && exec "$0" doctor --json --config "$1"', binary, config], {
        uid: 65534,
        gid: 65534,
        cwd: open,
        env: { PATH: process.env.PATH!, DOCKER_HOST: `unix://${join(open, "none.sock")}` },
      });
      const report = JSON.parse(run.stdout.toString()) as Report;
      const locking = report.checks.find((c) => c.check === "memory locking");
      expect(locking?.status).toBe("warn");
      expect(locking?.detail).toContain("64 KiB");
      expect(locking?.detail).toContain("LimitMEMLOCK=");
    } finally {
      await rm(open, { recursive: true, force: true });
    }
  });

  test("limits and capabilities are read from /proc", () => {
    const limits = "Limit                     Soft Limit           Hard Limit           Units\nMax core file size        0                    0                    bytes\nMax locked memory         65536                unlimited            bytes\n";
    expect(limitOf(limits, "Max core file size")).toEqual({ soft: 0n, hard: 0n });
    expect(limitOf(limits, "Max locked memory")).toEqual({ soft: 65536n, hard: undefined });
    expect(hasIpcLock("CapEff:\t000001ffffffffff\n")).toBe(true);
    expect(hasIpcLock("CapEff:\t0000000000000000\n")).toBe(false);
    expect(hasIpcLock("CapEff:\t0000000000004000\n")).toBe(true);
  });

  test("an unreachable Docker and an invalid config fail with exit 1", async () => {
    const { code, report } = await doctor("providers:\n  x:\n    type: nonsense\n", `unix://${join(dir, "nothing.sock")}`);
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const byName = Object.fromEntries(report.checks.map((c) => [c.check, c]));
    expect(byName["docker"]?.detail).toContain("cannot reach Docker");
    expect(byName["config"]?.detail).toContain("providers.x.type");
  });

  test("env injection is warned about", async () => {
    const { report } = await doctor(
      `agent:\n  socket: ${join(dir, "dso.sock")}\nsecrets:\n  - name: tok\n    inject: env\n    mappings: { value: TOKEN }\n`,
      host,
    );
    const env = report.checks.find((c) => c.check === "env injection");
    expect(env?.status).toBe("warn");
    expect(env?.detail).toContain("docker inspect");
  });

  test("active swap areas are read from /proc/swaps", () => {
    expect(activeSwaps("Filename\tType\tSize\tUsed\tPriority\n")).toEqual([]);
    expect(activeSwaps("Filename Type Size Used Priority\n/dev/sda2 partition 100 0 -2\n/dev/mapper/cryptswap partition 5 0 -3\n")).toEqual([
      "/dev/sda2",
      "/dev/mapper/cryptswap",
    ]);
    const header = "Filename Type Size Used Priority\n";
    const kinds: Record<string, SwapKind> = { "/dev/zram0": "ram", "/dev/mapper/cryptswap": "encrypted", "/dev/mapper/vg-swap": "plain", "/dev/sda2": "plain" };
    const kindOf = (area: string) => kinds[area] ?? "plain";
    expect(swapCheck(header, kindOf).status).toBe("ok");
    expect(swapCheck(`${header}/dev/mapper/cryptswap partition 5 0 -3\n/dev/zram0 partition 5 0 100\n`, kindOf).status).toBe("ok");
    // LVM is /dev/mapper too, and not encrypted.
    const lvm = swapCheck(`${header}/dev/mapper/vg-swap partition 5 0 -3\n/dev/zram0 partition 5 0 100\n`, kindOf);
    expect(lvm.status).toBe("warn");
    expect(lvm.detail).toContain("(/dev/mapper/vg-swap)");
    const plain = swapCheck(`${header}/dev/sda2 partition 100 0 -2\n`, kindOf);
    expect(plain.status).toBe("warn");
    expect(plain.detail).toContain("/dev/sda2");
    expect(plain.detail).toContain("memory locking does not cover delivered files");
  });
});

describe("dso doctor checks whether an agent answers on the socket", () => {
  const agentCheck = (report: Report) => report.checks.find((c) => c.check === "agent");

  test("no socket: a warning that says how to start the agent", async () => {
    const { report } = await doctor(`agent:\n  socket: ${join(dir, "absent.sock")}\n`, host);
    expect(agentCheck(report)).toEqual({ check: "agent", status: "warn", detail: `no agent is running: ${join(dir, "absent.sock")} does not exist (start it with: dso agent)` });
  });

  test("a stale socket that nobody answers on fails", async () => {
    const stale = join(dir, "stale.sock");
    // A socket file left behind by a process that bound it and died without unlinking it.
    const made = Bun.spawnSync(["python3", "-c", `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
    expect(made.exitCode).toBe(0);
    const { code, report } = await doctor(`agent:\n  socket: ${stale}\n`, host);
    expect(agentCheck(report)?.status).toBe("fail");
    expect(agentCheck(report)?.detail).toContain("nothing answers on it");
    expect(code).toBe(1);
  });

  test("a running agent is reported with its version and pid", async () => {
    const config = join(dir, "agent.yaml");
    await writeFile(config, `providers:\n  file:\n    type: file\n    config:\n      path: ${dir}\n`);
    const agent = await startAgent({ dir, config, dockerHost: host, name: "doctor-agent" });
    try {
      const run = await runDso(["doctor", "--json", "--config", config, "--socket", agent.socket], { env: { PATH: process.env.PATH, DOCKER_HOST: host } });
      const report = JSON.parse(run.stdout) as Report;
      const check = agentCheck(report);
      expect(check?.status).toBe("ok");
      expect(check?.detail).toBe(`agent ${pkg.version} answers on ${agent.socket}, pid ${agent.proc.pid}`);
      // The running agent's own hardening, from its status and its /proc entries.
      const cores = report.checks.find((c) => c.check === "core dumps");
      expect(cores?.status).toBe("ok");
      expect(cores?.detail).toStartWith(`the agent (pid ${agent.proc.pid}) refuses core dumps (RLIMIT_CORE 0, checked in /proc) and is not dumpable (PR_SET_DUMPABLE 0)`);
      expect(report.checks.find((c) => c.check === "memory locking")?.detail).toBe(`the agent (pid ${agent.proc.pid}) has CAP_IPC_LOCK: buffers holding values can be locked in RAM (mlock) without limit`);
    } finally {
      await agent.stop();
    }
  });
});

describe("dso doctor: the file provider's permissions", () => {
  async function fileProviderCheck(dirMode: number, fileMode: number) {
    const secrets = await mkdtemp(join(dir, "secrets-"));
    await writeFile(join(secrets, "db_password"), "doctor-planted-QUEBEC-1x", { mode: fileMode });
    await Bun.$`chmod ${fileMode.toString(8)} ${join(secrets, "db_password")} && chmod ${dirMode.toString(8)} ${secrets}`.quiet();
    const { report } = await doctor(`providers:\n  local:\n    type: file\n    config:\n      path: ${secrets}\nagent:\n  socket: ${join(dir, "dso.sock")}\n`, host);
    return { secrets, check: report.checks.find((c) => c.check === "file provider local") };
  }

  test("warns when the directory or a file is readable by other users, naming them and the fix", async () => {
    const { secrets, check } = await fileProviderCheck(0o755, 0o644);
    expect(check?.status).toBe("warn");
    expect(check?.detail).toContain(`${secrets} (0755)`);
    expect(check?.detail).toContain(`${join(secrets, "db_password")} (0644)`);
    expect(check?.detail).toContain("chmod 0700");
    expect(check?.detail).not.toContain("doctor-planted");
  });

  test("is quiet about a 0700 directory of 0600 files", async () => {
    const { check } = await fileProviderCheck(0o700, 0o600);
    expect(check?.status).toBe("ok");
  });
});

describe("dso doctor: the plugin tmpfs without CAP_SYS_ADMIN", () => {
  test("says mount(2) is not permitted and how to fix it; plugin mode unavailable", async () => {
    const config = join(dir, "nocap.yaml");
    await writeFile(config, `agent:\n  socket: ${join(dir, "dso.sock")}\n  volumes_root: ${join(dir, "not-a-tmpfs")}\n`);
    const proc = Bun.spawn(
      ["setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin", await dsoBinary(), "doctor", "--json", "--config", config],
      { env: { PATH: process.env.PATH!, DOCKER_HOST: host }, stdout: "pipe", stderr: "pipe" },
    );
    const report = JSON.parse(await new Response(proc.stdout).text()) as Report;
    expect(await proc.exited).toBe(1);
    const byName = Object.fromEntries(report.checks.map((c) => [c.check, c]));
    expect(byName["plugin tmpfs"]?.status).toBe("fail");
    expect(byName["plugin tmpfs"]?.detail).toContain("Operation not permitted (EPERM)");
    expect(byName["plugin tmpfs"]?.detail).toContain("CAP_SYS_ADMIN");
    expect(byName["mode plugin"]?.status).toBe("warn");
    expect(byName["mode volume"]?.status).toBe("ok");
  });
});
