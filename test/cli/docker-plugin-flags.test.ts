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
      // A TLS context is refused (its certificates would be dropped), not sent plain HTTP.
      const pem = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=dso-test"], { stdout: "ignore", stderr: "ignore" });
      expect(pem.exitCode).toBe(0);
      const tlsOpts = `host=tcp://192.0.2.1:2376,ca=${dir}/cert.pem,cert=${dir}/cert.pem,key=${dir}/key.pem`;
      expect(docker(["context", "create", "withtls", "--docker", tlsOpts]).code).toBe(0);
      const tls = docker(["--context", "withtls", "dso", "doctor", "--json"]);
      expect(tls.out).toContain(`docker context "withtls" uses TLS (tcp://192.0.2.1:2376), which DSO does not support yet`);
      expect(tls.code).toBe(2);
      // Another host's daemon: agent commands say the agent they reach is this host's.
      expect(docker(["context", "create", "faraway", "--docker", "host=tcp://192.0.2.1:2375"]).code).toBe(0);
      const ls = docker(["--context", "faraway", "dso", "ls"]);
      expect(ls.out).toContain("docker context faraway (tcp://192.0.2.1:2375) is another host's daemon");
      expect(ls.code).toBe(2);
      const viaHost = docker(["-H", "tcp://192.0.2.1:2375", "dso", "status"]);
      expect(viaHost.out).toContain("docker -H tcp://192.0.2.1:2375 is another host's daemon");
      expect(viaHost.code).toBe(2);
      const version = docker(["-D", "--log-level", "debug", "dso", "version"]);
      expect(version.out).toContain("dso ");
      expect(version.code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
