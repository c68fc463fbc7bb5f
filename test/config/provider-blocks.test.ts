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
