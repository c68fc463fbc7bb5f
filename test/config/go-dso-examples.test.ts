/**
 * The Go DSO's example configs load (issue 22): its Vault example talks plain http to a
 * `vault` host on the compose network and its local example names `path: "./.secrets"`. Both were
 * refused; a working file must keep loading, with the risk as a warning in validate and doctor.
 */
import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDso } from "../support/dso-binary.ts";

// The lines that matter, as the Go DSO's examples/hashicorp-vault and examples/dso-local write them.
const VAULT = ["providers:", "  dev-vault:", "    type: vault", "    config:", '      address: "http://vault:8200"', "      token: ${VAULT_TOKEN}", "secrets:", "  - name: app/db", "    provider: dev-vault", "    inject: { type: file, path: /run/secrets }", ""].join("\n");
const LOCAL = ["providers:", "  local:", "    type: file", "    config:", '      path: "./.secrets"', ""].join("\n");

describe("the Go DSO's example configs", () => {
  test("plain-http Vault and a relative file path load; validate and doctor warn about the http", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-goexamples-"));
    try {
      await mkdir(join(dir, "examples"));
      await writeFile(join(dir, "examples", "vault.yaml"), VAULT);
      await writeFile(join(dir, "examples", "local.yaml"), LOCAL);
      const env = { PATH: process.env.PATH, VAULT_TOKEN: "dev-token", DOCKER_HOST: `unix://${dir}/none.sock` };
      const vault = await runDso(["config", "validate", "--config", join(dir, "examples", "vault.yaml")], { env });
      expect(vault.code, vault.stderr).toBe(0);
      expect(vault.stderr).toContain("vault.yaml:5: providers.dev-vault.config.address: plain http to a non-loopback host sends the Vault token in clear");
      const local = await runDso(["config", "validate", "--config", "examples/local.yaml"], { env, cwd: dir });
      expect(local.code, local.stderr).toBe(0);
      const doctor = JSON.parse((await runDso(["doctor", "--json", "--config", join(dir, "examples", "vault.yaml"), "--socket", join(dir, "dso.sock")], { env })).stdout);
      expect(JSON.stringify(doctor.checks.find((c: { check: string }) => c.check === "config"))).toContain("plain http");
      // The relative path is the examples directory's .secrets, wherever dso runs from: doctor's file-provider check names it.
      const localDoctor = (await runDso(["doctor", "--json", "--config", "examples/local.yaml", "--socket", join(dir, "dso.sock")], { env, cwd: dir })).stdout;
      expect(localDoctor).toContain(join(dir, "examples", ".secrets"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
