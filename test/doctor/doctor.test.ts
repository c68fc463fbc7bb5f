import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { activeSwaps } from "../../src/doctor/checks.ts";
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
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
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
      const check = agentCheck(JSON.parse(run.stdout) as Report);
      expect(check?.status).toBe("ok");
      expect(check?.detail).toBe(`agent ${pkg.version} answers on ${agent.socket}, pid ${agent.proc.pid}`);
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
