import { describe, expect, test } from "bun:test";
import { ConfigError, formatIssue, parseConfig } from "../../src/config/index.ts";

const yaml = (...lines: string[]) => `${lines.join("\n")}\n`;

function rejection(text: string, env: Record<string, string | undefined>): ConfigError {
  try {
    parseConfig(text, "dso.yaml", env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected the configuration to be rejected");
}

const vaultWith = (value: string) => yaml("providers:", "  v:", "    type: vault", "    config:", `      address: ${value}`);
const addressOf = (text: string, env: Record<string, string | undefined>) =>
  parseConfig(text, "dso.yaml", env).config.providers.v?.config.address;
/** A value with no format of its own (the vault namespace), for text that is not a URL. */
const namespaceWith = (value: string) => yaml("providers:", "  v:", "    type: vault", "    config:", `      namespace: ${value}`);
const namespaceOf = (text: string, env: Record<string, string | undefined>) =>
  parseConfig(text, "dso.yaml", env).config.providers.v?.config.namespace;

describe("${VAR} expansion", () => {
  test("replaces ${VAR} inside a string", () => {
    expect(addressOf(vaultWith("https://${VAULT_HOST}:8200"), { VAULT_HOST: "vault.internal" })).toBe("https://vault.internal:8200");
  });

  test("uses the default of ${VAR:-default} when the variable is unset or empty", () => {
    expect(addressOf(vaultWith("${VAULT_ADDR:-http://127.0.0.1:8200}"), {})).toBe("http://127.0.0.1:8200");
    expect(addressOf(vaultWith("${VAULT_ADDR:-http://127.0.0.1:8200}"), { VAULT_ADDR: "" })).toBe("http://127.0.0.1:8200");
    expect(addressOf(vaultWith("${VAULT_ADDR:-http://127.0.0.1:8200}"), { VAULT_ADDR: "https://v" })).toBe("https://v");
  });

  test("$${ writes a literal ${", () => {
    expect(namespaceOf(namespaceWith("'$${NOT_A_VAR}'"), {})).toBe("${NOT_A_VAR}");
  });

  test("a lone $ is left alone", () => {
    expect(namespaceOf(namespaceWith("'cost$5'"), {})).toBe("cost$5");
  });

  test("an unset variable without default is an error naming the field and the variable", () => {
    expect(rejection(vaultWith("${VAULT_ADDR}"), {}).issues.map(formatIssue)).toEqual([
      "dso.yaml:5: providers.v.config.address: environment variable VAULT_ADDR is not set (write ${VAULT_ADDR:-default} to give a default)",
    ]);
  });

  test("every unset variable is reported, not only the first", () => {
    const text = yaml("providers:", "  v:", "    type: vault", "    config:", "      address: ${A}", "      token: ${B}");
    expect(rejection(text, {}).issues.map((i) => i.path)).toEqual(["providers.v.config.address", "providers.v.config.token"]);
  });

  test("an unterminated ${ is an error", () => {
    expect(rejection(vaultWith("'${OOPS'"), {}).issues.map(formatIssue)).toEqual([
      'dso.yaml:5: providers.v.config.address: unterminated "${": close it with "}" or write "$${" for a literal "${"',
    ]);
  });

  test("a value cannot inject YAML structure", () => {
    const env = { INJECTED: "x\nsecrets:\n  - name: evil\n" };
    const { config } = parseConfig(namespaceWith("${INJECTED}"), "dso.yaml", env);
    expect(config.providers.v?.config.namespace).toBe(env.INJECTED);
    expect(config.secrets).toEqual([]);
  });

  test("keys are not expanded", () => {
    const text = yaml("secrets:", "  - name: a", "    mappings:", "      ${KEY}: value_file");
    expect(parseConfig(text, "dso.yaml", { KEY: "x" }).config.secrets[0]?.mappings).toEqual({ "${KEY}": "value_file" });
  });

  test("expanded numbers and booleans are accepted where those belong", () => {
    const text = yaml("agent:", "  cache: ${CACHE}", "providers:", "  a:", "    type: aws", "    retry:", "      attempts: ${ATTEMPTS}");
    const { config } = parseConfig(text, "dso.yaml", { CACHE: "true", ATTEMPTS: "7" });
    expect(config.agent.cache).toBe(true);
    expect(config.providers.a?.retry.attempts).toBe(7);
  });
});

describe("secret values never appear in errors", () => {
  const SECRET = "hunter2-Sup3rS3cret";
  const plants: [string, string][] = [
    ["retry attempts", yaml("providers:", "  a:", "    type: aws", "    retry:", "      attempts: ${SECRET}")],
    ["a strategy", yaml("secrets:", "  - name: a", "    rotation:", "      strategy: ${SECRET}")],
    ["a mapping name", yaml("secrets:", "  - name: a", "    inject: env", "    mappings:", "      k: ${SECRET}")],
    ["a provider reference", yaml("secrets:", "  - name: a", "    provider: ${SECRET}")],
    ["a duration", yaml("agent:", "  watch:", "    polling_interval: ${SECRET}")],
    ["an inject path", yaml("defaults:", "  inject:", "    path: ${SECRET}")],
    ["a mode", yaml("defaults:", "  inject:", "    mode: ${SECRET}")],
  ];
  for (const [where, text] of plants) {
    test(`an invalid expanded value in ${where} is not quoted back`, () => {
      const error = rejection(text, { SECRET });
      expect(error.issues.length).toBeGreaterThan(0);
      expect(error.message).not.toContain(SECRET);
      expect(error.message).not.toContain("hunter2");
      expect(JSON.stringify(error.issues)).not.toContain(SECRET);
    });
  }

  test("a literal credential under config is not quoted back either", () => {
    const text = yaml("providers:", "  v:", "    type: vault", "    config:", "      token: [s.literal-token-value]");
    const error = rejection(text, {});
    expect(error.message).toBe("dso.yaml:5: providers.v.config.token: must be a string, not a list");
    expect(error.message).not.toContain("literal-token-value");
  });

  test("a webhook token of the wrong type is not quoted back", () => {
    const text = yaml("agent:", "  watch:", "    webhook:", "      auth_token: 12345678901234567890");
    const error = rejection(text, {});
    expect(error.message).not.toContain("12345678901234567890");
  });
});
