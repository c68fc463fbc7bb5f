/**
 * `docker dso` gets Docker's whole command line (issue 22): Docker's global flags before `dso`
 * (`--context`, `-H`, `-D`, `--log-level`, `--config`, TLS) are honoured, not taken for commands.
 * Before: `docker --context default dso status` → `unknown command "default"`.
 */
import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cliPluginArgs } from "../../src/cli/docker-cli-plugin.ts";
import { dsoBinary } from "../support/dso-binary.ts";

describe("docker dso: Docker's global flags", () => {
  test("flags before the plugin's name become the environment Docker's tools read", () => {
    expect(cliPluginArgs(["--context", "prod", "-D", "dso", "status", "--json"])).toEqual({
      args: ["status", "--json"],
      env: { DOCKER_CONTEXT: "prod", DSO_LOG_LEVEL: "debug" },
    });
    expect(cliPluginArgs(["-H", "tcp://10.0.0.1:2376", "--tlsverify", "--tlscacert=/certs/ca.pem", "--log-level", "warn", "--config", "/cfg", "dso", "ls"])).toEqual({
      args: ["ls"],
      env: { DOCKER_HOST: "tcp://10.0.0.1:2376", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/certs", DSO_LOG_LEVEL: "warn", DOCKER_CONFIG: "/cfg" },
    });
    // A context named like the plugin is a value, not the plugin's name.
    expect(cliPluginArgs(["--context", "dso", "dso", "ls"])).toEqual({ args: ["ls"], env: { DOCKER_CONTEXT: "dso" } });
    // Direct invocations are left alone, even with a secret called dso.
    expect(cliPluginArgs(["dso", "status"])).toEqual({ args: ["status"], env: {} });
    expect(cliPluginArgs(["--log-level", "debug", "rotate", "dso"])).toEqual({ args: ["--log-level", "debug", "rotate", "dso"], env: {} });
    expect(cliPluginArgs(["--json", "ls"])).toEqual({ args: ["--json", "ls"], env: {} });
  });

  test("through the real docker CLI: --context and -H pick the daemon, -D/--log-level are accepted", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-cliplugin-"));
    try {
      await mkdir(join(dir, "cli-plugins"));
      await symlink(await dsoBinary(), join(dir, "cli-plugins", "docker-dso"));
      const docker = (args: string[]) => {
        const run = Bun.spawnSync(["docker", "--config", dir, ...args], { env: { PATH: process.env.PATH! }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
        return { code: run.exitCode, out: run.stdout.toString() + run.stderr.toString() };
      };
      expect(docker(["context", "create", "elsewhere", "--docker", `host=unix://${dir}/ctx.sock`]).code).toBe(0);
      expect(docker(["--context", "elsewhere", "dso", "doctor", "--json"]).out).toContain(`unix://${dir}/ctx.sock`);
      expect(docker(["-H", `unix://${dir}/host.sock`, "dso", "doctor", "--json"]).out).toContain(`unix://${dir}/host.sock`);
      const version = docker(["-D", "--log-level", "debug", "dso", "version"]);
      expect(version.out).toContain("dso ");
      expect(version.code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
