/** `providers.<name>.config` and `auth` are checked by the provider's descriptor at load, with lines. */
import { describe, expect, test } from "bun:test";
import { ConfigError, formatIssue, parseConfig } from "../../src/config/index.ts";

function problems(text: string): string[] {
  try {
    parseConfig(text, "dso.yaml", {});
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatIssue);
    throw error;
  }
}

describe("provider blocks are validated before anything runs", () => {
  test("a typo in config, auth.method or auth.params is reported at its line, with a suggestion", () => {
    const text = [
      "providers:",
      "  hv:",
      "    type: vault",
      "    config:",
      "      adress: https://vault.internal:8200",
      "    auth:",
      "      method: tokn",
      "  cloud:",
      "    type: aws",
      "    region: eu-west-1",
      "    auth:",
      "      params:",
      "        secret_acess_key: x",
      "",
    ].join("\n");
    expect(problems(text)).toEqual([
      expect.stringMatching(/^dso\.yaml:5: providers\.hv\.config\.adress: unknown key for the vault provider .*did you mean "address"\?$/),
      expect.stringMatching(/^dso\.yaml:7: providers\.hv\.auth\.method: "tokn" is not one of token, approle; did you mean "token"\?$/),
      expect.stringMatching(/^dso\.yaml:13: providers\.cloud\.auth\.params\.secret_acess_key: unknown key for the aws provider .*did you mean "secret_access_key"\?$/),
    ]);
  });

  test("bad config values are reported at their line, by the descriptor's schema", () => {
    const text = [
      "providers:",
      "  hv:",
      "    type: vault",
      "    config:",
      "      address: not-a-url",
      '      kv_version: "3"',
      "      tls_skip_verify: maybe",
      "  cloud:",
      "    type: aws",
      "    region: eu-west-1",
      "    config:",
      "      max_attempts: lots",
      "  f: { type: file, config: { path: relative/dir } }",
      "  z: { type: azure, config: { vault_url: 'http://x.vault.azure.net' } }",
      "",
    ].join("\n");
    expect(problems(text)).toEqual([
      "dso.yaml:5: providers.hv.config.address: is not a URL (expected https://host:8200)",
      'dso.yaml:6: providers.hv.config.kv_version: must be "1" or "2"',
      'dso.yaml:7: providers.hv.config.tls_skip_verify: must be "true" or "false"',
      "dso.yaml:12: providers.cloud.config.max_attempts: must be an integer from 1 to 10",
      "dso.yaml:14: providers.z.config.vault_url: must be an https:// URL (Azure refuses tokens over plain http)",
    ]);
  });

  test("values from ${VAR} are checked after expansion, and the message does not echo them", () => {
    const text = ["providers:", "  hv:", "    type: vault", "    config:", "      address: ${VAULT_URL}", ""].join("\n");
    try {
      parseConfig(text, "dso.yaml", { VAULT_URL: "planted-Secret-4711" });
      throw new Error("expected a ConfigError");
    } catch (error) {
      const lines = (error as ConfigError).issues.map(formatIssue);
      expect(lines).toEqual(["dso.yaml:5: providers.hv.config.address: is not a URL (expected https://host:8200)"]);
      expect(lines.join("\n")).not.toContain("planted");
    }
    expect(() => parseConfig(text, "dso.yaml", { VAULT_URL: "https://vault.internal:8200" })).not.toThrow();
  });

  test("an empty vault address is unset (VAULT_ADDR or the default), as before; a bad one keeps its own reason", () => {
    const text = ["providers:", "  hv:", "    type: vault", "    config:", "      address: ${VAULT_URL:-}", ""].join("\n");
    expect(() => parseConfig(text, "dso.yaml", {})).not.toThrow();
    expect(problems(text.replace("${VAULT_URL:-}", "''"))).toEqual([]);
    // Plain http to another host loads with a warning (issue 22: the Go DSO's vault example).
    expect(problems(text.replace("${VAULT_URL:-}", "http://10.1.2.3:8200"))).toEqual([]);
    expect(parseConfig(text.replace("${VAULT_URL:-}", "http://vault:8200"), "dso.yaml", {}).warnings.map(formatIssue)).toEqual([
      "dso.yaml:5: providers.hv.config.address: plain http to a non-loopback host sends the Vault token in clear; use https",
    ]);
    expect(parseConfig(text.replace("${VAULT_URL:-}", "http://127.0.0.1:8200"), "dso.yaml", {}).warnings).toEqual([]);
  });

  test("an azure block without vault_url is refused before anything runs", () => {
    expect(problems(["providers:", "  z:", "    type: azure", "    config: {}", ""].join("\n"))).toEqual([
      expect.stringMatching(/^dso\.yaml:\d+: providers\.z\.config\.vault_url: required/),
    ]);
  });

  test("valid blocks of every provider type pass", () => {
    const text = [
      "providers:",
      "  f: { type: file, config: { path: /etc/dso/secrets } }",
      "  a: { type: aws, region: eu-west-1, auth: { method: iam_role }, config: { max_attempts: '3' } }",
      "  v: { type: vault, config: { address: 'https://v:8200', mount: kv }, auth: { method: approle, params: { role_id: r } } }",
      "  z: { type: azure, config: { vault_url: 'https://x.vault.azure.net' }, auth: { method: managed_identity } }",
      "",
    ].join("\n");
    expect(problems(text)).toEqual([]);
  });
});
