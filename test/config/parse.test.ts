import { describe, expect, test } from "bun:test";
import { ConfigError, formatIssue, parseConfig } from "../../src/config/index.ts";
import { NOTIFICATION_EVENTS } from "../../src/config/schema.ts";

const FIXTURES = `${import.meta.dir}/fixtures`;
const fixture = (name: string) => Bun.file(`${FIXTURES}/${name}`).text();

function errorsOf(text: string, env: Record<string, string | undefined> = {}): string[] {
  try {
    parseConfig(text, "dso.yaml", env);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map(formatIssue);
    throw error;
  }
  throw new Error("expected the configuration to be rejected");
}

function warningsOf(text: string, env: Record<string, string | undefined> = {}): string[] {
  return parseConfig(text, "dso.yaml", env).warnings.map(formatIssue);
}

/** One YAML line per argument, so line numbers in expectations are easy to count. */
const yaml = (...lines: string[]) => `${lines.join("\n")}\n`;

describe("Go DSO example files", () => {
  test("a v2 multi-provider file resolves every provider, default and secret", async () => {
    const env = { VAULT_TOKEN: "s.test-token", DSO_WEBHOOK_TOKEN: "0123456789abcdef-webhook" };
    const { config, warnings } = parseConfig(await fixture("v2-multi-provider.yaml"), "dso.yaml", env);

    expect(config.version).toBe(2);
    expect(Object.keys(config.providers)).toEqual(["aws-prod", "dev-vault", "azure-prod", "local-backup"]);
    expect(config.providers["aws-prod"]).toEqual({
      name: "aws-prod",
      type: "aws",
      region: "us-east-1",
      auth: { method: "iam_role", params: {} },
      config: {},
      retry: { attempts: 5, backoffMs: 5000 },
      allowUndeclared: false,
    });
    expect(config.providers["dev-vault"]?.config).toEqual({
      address: "https://vault.internal:8200",
      token: "s.test-token",
      mount: "secret",
    });
    expect(config.providers["dev-vault"]?.retry).toEqual({ attempts: 3, backoffMs: 2000 });

    expect(config.agent).toEqual({
      cache: true,
      socket: "/run/docker/plugins/dso.sock",
      groupSocket: "/run/dso/control/dso.sock",
      socketGroup: "docker",
      volumesRoot: "/run/dso/volumes",
      metrics: { enabled: false },
      audit: { enabled: false, output: "stderr" },
      leakSentinel: { enabled: false },
      watch: { pollingIntervalMs: 90_000, webhook: { enabled: true, listen: "127.0.0.1:8471", authToken: "0123456789abcdef-webhook" } },
      rotation: { strategy: "rolling", signal: "SIGHUP", healthCheckTimeoutMs: 90_000 },
    });
    expect(config.defaults).toEqual({
      inject: { type: "file", path: "/run/secrets", uid: 1000, gid: 1000, mode: 0o440 },
      rotation: { enabled: true, strategy: "restart" },
    });

    const [db, key, mysql] = config.secrets;
    expect(db).toEqual({
      name: "prod/db/credentials",
      provider: "aws-prod",
      inject: { type: "env" },
      targets: { containers: ["api-server", "worker-node"], labels: {}, volumes: [] },
      mappings: { username: "DB_USER", password: "DB_PASS" },
      rotation: { enabled: true, strategy: "restart", signal: "SIGHUP", healthCheckTimeoutMs: 90_000 },
    });
    expect(key?.inject).toEqual({ type: "file", path: "/run/secrets/api", uid: 0, gid: 0, mode: 0o400 });
    expect(key?.targets.labels).toEqual({ "dso.injection": "enabled", tier: "1" });
    expect(key?.rotation).toEqual({ enabled: true, strategy: "signal", signal: "SIGUSR1", healthCheckTimeoutMs: 90_000 });
    expect(mysql?.inject).toEqual({ type: "file", path: "/run/secrets", uid: 1000, gid: 1000, mode: 0o440 });
    expect(mysql?.rotation.enabled).toBe(false);

    expect(warnings.map(formatIssue)).toEqual([
      "dso.yaml:54: logging: ignored: DSO does not use this key (set the log level with --log-level or DSO_LOG_LEVEL)",
    ]);
  });

  test("the legacy v1 format becomes one provider named after `provider:`", async () => {
    const { config, warnings } = parseConfig(await fixture("legacy-v1.yaml"), "dso.yaml", {});

    expect(config.version).toBe(1);
    expect(config.providers).toEqual({
      vault: {
        name: "vault",
        type: "vault",
        auth: { params: {} },
        config: { address: "http://127.0.0.1:8200", token: "dev-root-token", mount: "kv" },
        retry: { attempts: 3, backoffMs: 2000 },
        allowUndeclared: false,
      },
    });
    const [database, tls] = config.secrets;
    expect(database?.provider).toBe("vault");
    expect(database?.inject).toEqual({ type: "env" });
    expect(database?.rotation).toMatchObject({ enabled: true, strategy: "signal" });
    expect(tls?.inject).toEqual({ type: "file", path: "/run/secrets/tls", uid: 0, gid: 0, mode: 0o400 });
    expect(tls?.rotation.enabled).toBe(false);
    expect(warnings.map(formatIssue)).toEqual(["dso.yaml:3: mode: ignored: DSO does not use this key"]);
  });

  test("with one provider, secrets use it without naming it", async () => {
    const { config, warnings } = parseConfig(await fixture("env-mappings.yaml"), "dso.yaml", {});

    expect(config.secrets).toHaveLength(1);
    expect(config.secrets[0]?.provider).toBe("aws-prod");
    expect(config.secrets[0]?.name).toBe("arn:aws:secretsmanager:us-east-2:123456789012:secret:mysql-AbCdEf");
    expect(config.secrets[0]?.mappings).toEqual({
      MYSQL_ROOT_PASSWORD: "MYSQL_ROOT_PASSWORD",
      MYSQL_USER: "MYSQL_USER",
      MYSQL_PASSWORD: "MYSQL_PASSWORD",
    });
    expect(config.secrets[0]?.rotation.strategy).toBe("restart");
    expect(config.defaults.rotation.strategy).toBe("restart");
    expect(warnings.map(formatIssue)).toEqual([
      'dso.yaml:17: defaults.rotation.strategy: strategy "auto" is deprecated and resolves to "restart"; write restart, rolling, signal or none',
    ]);
  });

  test("provider type `local` is read as `file` with a warning; its relative path is resolved against dso.yaml's directory (issue 22)", async () => {
    const text = await fixture("local-dev.yaml");
    const warned = [
      '/srv/app/dso.yaml:4: providers.local.type: provider type "local" is the old name of "file"; reading it as file',
      "/srv/app/dso.yaml:8: logging: ignored: DSO does not use this key (set the log level with --log-level or DSO_LOG_LEVEL)",
    ];
    const { config, warnings } = parseConfig(text, "/srv/app/dso.yaml", {});
    expect(config.providers.local?.type).toBe("file");
    expect(config.providers.local?.config).toEqual({ path: "/srv/app/.secrets" });
    expect(warnings.map(formatIssue)).toEqual(warned);
    // An absolute path is kept as written.
    const absolute = parseConfig(text.replace("./.secrets", "/srv/dso/secrets"), "/srv/app/dso.yaml", {});
    expect(absolute.config.providers.local?.config).toEqual({ path: "/srv/dso/secrets" });
  });
});

describe("errors", () => {
  test("every problem in a file is reported at once, in line order", async () => {
    expect(errorsOf(await fixture("many-errors.yaml"))).toEqual([
      'dso.yaml:1: version: must be 1 or 2 (also written "1", "v1", "v2") (got "3")',
      'dso.yaml:6: providers.aws-prod.retry.backoff: must be a duration such as "30s", "5m", "1h30m", "250ms" or a number of seconds (got "soon")',
      "dso.yaml:10: providers.vault.config.address: must be a string, not a mapping",
      'dso.yaml:14: agent.watch.polling_intervall: unknown key "polling_intervall" (did you mean "polling_interval"?)',
      'dso.yaml:21: secrets.0.mappings.password: must be a variable name: letters, digits and _, not starting with a digit (got "9PASSWORD")',
      "dso.yaml:22: secrets.1.provider: is required when more than one provider is configured (aws-prod, vault)",
      'dso.yaml:27: secrets.1.mappings.cert: is a file name and must not contain "/" (got "../../etc/shadow")',
    ]);
  });

  test("every unknown key in one mapping is reported, each at its own line (valibot stops at the first)", () => {
    expect(errorsOf(yaml("secrets:", "  - name: app/db", "    bogus: 1", "    other: 2", "    inject:", "      type: file", "      paht: /run/x", "      moed: 0400"))).toEqual([
      'dso.yaml:3: secrets.0.bogus: unknown key "bogus"',
      'dso.yaml:4: secrets.0.other: unknown key "other"',
      'dso.yaml:7: secrets.0.inject.paht: unknown key "paht" (did you mean "path"?)',
      'dso.yaml:8: secrets.0.inject.moed: unknown key "moed" (did you mean "mode"?)',
    ]);
    expect(errorsOf(yaml("providers: {}", "secretz: []", "agnet: {}"))).toEqual([
      'dso.yaml:2: secretz: unknown key "secretz" (did you mean "secrets"?)',
      'dso.yaml:3: agnet: unknown key "agnet" (did you mean "agent"?)',
    ]);
  });

  test("the error message lists every issue and carries code CONFIG_INVALID", () => {
    const text = yaml("secrets:", "  - provider: x", "  - name: b", "    colour: red");
    try {
      parseConfig(text, "/etc/dso/dso.yaml", {});
      throw new Error("not rejected");
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const configError = error as ConfigError;
      expect(configError.code).toBe("CONFIG_INVALID");
      expect(configError.message.split("\n")).toEqual([
        "/etc/dso/dso.yaml:2: secrets.0.name: is required",
        '/etc/dso/dso.yaml:2: secrets.0.provider: no provider named "x" is configured (configured: file)',
        '/etc/dso/dso.yaml:4: secrets.1.colour: unknown key "colour"',
      ]);
    }
  });

  const cases: [string, string, string[]][] = [
    ["unknown top-level key", yaml("providers: {}", "secretz: []"), ['dso.yaml:2: secretz: unknown key "secretz" (did you mean "secrets"?)']],
    [
      "unknown key deep inside a list item, with its full path",
      yaml("secrets:", "  - name: a", "  - name: b", "    inject:", "      type: file", "      paht: /run/x"),
      ['dso.yaml:6: secrets.1.inject.paht: unknown key "paht" (did you mean "path"?)'],
    ],
    ["missing secret name", yaml("secrets:", "  - mappings:", "      a: b"), ["dso.yaml:2: secrets.0.name: is required"]],
    [
      "secret names an undefined provider",
      yaml("providers:", "  aws:", "    type: aws", "secrets:", "  - name: a", "    provider: vault"),
      ['dso.yaml:6: secrets.0.provider: no provider named "vault" is configured (configured: aws)'],
    ],
    [
      "secret without provider when several exist",
      yaml("providers:", "  a:", "    type: aws", "  b:", "    type: vault", "secrets:", "  - name: x"),
      ["dso.yaml:7: secrets.0.provider: is required when more than one provider is configured (a, b)"],
    ],
    [
      "huawei provider",
      yaml("providers:", "  hw:", "    type: huawei"),
      ['dso.yaml:3: providers.hw.type: provider type "huawei" is not supported by this DSO (supported: aws, azure, vault, file, gcp)'],
    ],
    [
      "unknown provider type",
      yaml("providers:", "  g:", "    type: ibm"),
      ['dso.yaml:3: providers.g.type: must be one of aws, azure, vault, file, gcp (got "ibm")'],
    ],
    ["provider without type", yaml("providers:", "  g:", "    region: x"), ["dso.yaml:2: providers.g.type: is required"]],
    [
      "bad provider name",
      yaml("providers:", "  'my vault':", "    type: vault"),
      ["dso.yaml:2: providers.my vault: provider names use letters, digits, '.', '_' and '-', starting with a letter or digit"],
    ],
    ["providers as a list", yaml("providers:", "  - type: aws"), ["dso.yaml:1: providers: must be a mapping of provider names to settings, not a list"]],
    ["secrets as a mapping", yaml("secrets:", "  name: a"), ["dso.yaml:1: secrets: must be a list (- name: ... items), not a mapping"]],
    [
      "bad duration names the field",
      yaml("agent:", "  rotation:", "    health_check_timeout: 10 minutes"),
      ['dso.yaml:3: agent.rotation.health_check_timeout: must be a duration such as "30s", "5m", "1h30m", "250ms" or a number of seconds (got "10 minutes")'],
    ],
    ["polling interval under a second", yaml("agent:", "  watch:", "    polling_interval: 100ms"), ['dso.yaml:3: agent.watch.polling_interval: must be at least 1s (got "100ms")']],
    [
      "mode with special bits",
      yaml("defaults:", "  inject:", "    mode: 04755"),
      ['dso.yaml:3: defaults.inject.mode: must be an octal file mode from "0000" to "0777", such as "0400" (got "04755")'],
    ],
    [
      "mode with a non-octal digit",
      yaml("secrets:", "  - name: a", "    inject:", "      mode: 0800"),
      ['dso.yaml:4: secrets.0.inject.mode: must be an octal file mode from "0000" to "0777", such as "0400" (got "0800")'],
    ],
    ["negative uid", yaml("defaults:", "  inject:", "    uid: -1"), ['dso.yaml:3: defaults.inject.uid: must be a whole number from 0 to 4294967294 (got "-1")']],
    ["relative inject path", yaml("defaults:", "  inject:", "    path: run/secrets"), ['dso.yaml:3: defaults.inject.path: must be an absolute path (got "run/secrets")']],
    ["inject path escaping with ..", yaml("defaults:", "  inject:", "    path: /run/../etc"), ['dso.yaml:3: defaults.inject.path: must not contain ".." (got "/run/../etc")']],
    [
      "unknown strategy",
      yaml("secrets:", "  - name: a", "    rotation:", "      strategy: blue-green"),
      ['dso.yaml:4: secrets.0.rotation.strategy: must be one of restart, signal, rolling, none, auto (got "blue-green")'],
    ],
    [
      "unknown signal",
      yaml("agent:", "  rotation:", "    signal: SIGFOO"),
      ['dso.yaml:3: agent.rotation.signal: must be a signal name such as SIGHUP or SIGUSR1 (got "SIGFOO")'],
    ],
    [
      "legacy inject string that is neither env nor file",
      yaml("secrets:", "  - name: a", "    inject: socket"),
      ['dso.yaml:3: secrets.0.inject: must be a mapping or one of file, env (got "socket")'],
    ],
    [
      "env mapping to an invalid variable name",
      yaml("secrets:", "  - name: a", "    inject: env", "    mappings:", "      key: MY-VAR"),
      ['dso.yaml:5: secrets.0.mappings.key: must be a variable name: letters, digits and _, not starting with a digit (got "MY-VAR")'],
    ],
    [
      "file mapping with a path separator",
      yaml("secrets:", "  - name: a", "    mappings:", "      key: sub/file"),
      ['dso.yaml:4: secrets.0.mappings.key: is a file name and must not contain "/" (got "sub/file")'],
    ],
    [
      "file mapping named ..",
      yaml("secrets:", "  - name: a", "    mappings:", "      key: '..'"),
      ['dso.yaml:4: secrets.0.mappings.key: must not be "." or ".." (a directory reference) (got "..")'],
    ],
    [
      "file mapping with a control character",
      yaml("secrets:", "  - name: a", "    mappings:", '      key: "a\\x01b"'),
      ["dso.yaml:4: secrets.0.mappings.key: must not contain control characters"],
    ],
    [
      "two keys mapped to one file",
      yaml("secrets:", "  - name: a", "    mappings:", "      user: creds", "      pass: creds"),
      ['dso.yaml:5: secrets.0.mappings.pass: maps to the same file as "user"'],
    ],
    ["duplicate key", yaml("agent:", "  cache: true", "  cache: false"), ["dso.yaml:3: agent.cache: duplicate key (first written on line 2)"]],
    ["a boolean written as a word", yaml("agent:", "  cache: yes"), ['dso.yaml:2: agent.cache: must be true or false (got "yes")']],
    ["a list where a string belongs", yaml("secrets:", "  - name: [a, b]"), ["dso.yaml:2: secrets.0.name: must be a string, not a list"]],
    ["unsupported version", yaml('version: "v3"'), ['dso.yaml:1: version: must be 1 or 2 (also written "1", "v1", "v2") (got "v3")']],
    [
      "v1 config without provider",
      yaml("config:", "  path: /x"),
      ["dso.yaml:1: config: a top-level config needs a top-level provider (v1 format); or move it to providers.<name>.config"],
    ],
    [
      "webhook enabled without a token",
      yaml("agent:", "  watch:", "    webhook:", "      enabled: true"),
      ["dso.yaml:3: agent.watch.webhook.auth_token: is required when the webhook is enabled"],
    ],
    ["YAML syntax error", yaml("providers:", "  aws:", "    type: aws", "  bad: [unclosed", "secrets: []"), ["dso.yaml:4: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]"]],
    ["a top-level list", yaml("- name: a"), ["dso.yaml:1: the file must hold one mapping (providers:, secrets:, ...), not a list or several documents"]],
  ];
  for (const [name, text, expected] of cases) {
    test(`reports ${name}`, () => {
      expect(errorsOf(text)).toEqual(expected);
    });
  }
});

describe("keys the Go DSO documents but DSO does not use", () => {
  test("each is accepted with a warning at its own line", () => {
    const text = yaml(
      "version: v2",
      "mode: cloud",
      "runtime:",
      "  mode: agent",
      "  log_level: info",
      "agent:",
      "  refresh_interval: 10m",
      "  auto_sync: true",
      "  restart_strategy:",
      "    type: rolling",
      "  watch:",
      "    mode: hybrid",
      "    webhook:",
      "      endpoint: /hook",
      "  rotation:",
      "    enabled: true",
      "notifications:",
      "  enabled: true",
      "proxy:",
      "  allowed_host_ports: ['8080']",
    );
    expect(warningsOf(text)).toEqual([
      "dso.yaml:2: mode: ignored: DSO does not use this key",
      "dso.yaml:3: runtime: ignored: DSO does not use this key",
      "dso.yaml:7: agent.refresh_interval: ignored: DSO does not use this key (use agent.watch.polling_interval)",
      "dso.yaml:8: agent.auto_sync: ignored: DSO does not use this key",
      "dso.yaml:9: agent.restart_strategy: ignored: DSO does not use this key (use agent.rotation.strategy)",
      "dso.yaml:12: agent.watch.mode: ignored: DSO does not use this key",
      "dso.yaml:14: agent.watch.webhook.endpoint: ignored: DSO does not use this key",
      "dso.yaml:16: agent.rotation.enabled: ignored: DSO does not use this key (use defaults.rotation.enabled)",
      "dso.yaml:19: proxy: ignored: DSO does not use this key (it does not proxy host ports)",
    ]);
  });

  test("variables inside ignored keys are not expanded, so an unset one is no error", () => {
    const text = yaml("proxy:", "  allowed_host_ports:", "    - ${PORTS}");
    expect(warningsOf(text)).toHaveLength(1);
  });
});

describe("resolution", () => {
  test("a provider's call timeout is a duration of at least 100ms", () => {
    const { config } = parseConfig(yaml("providers:", "  f:", "    type: file", "    timeout: 2s"), "dso.yaml", {});
    expect(config.providers.f?.timeoutMs).toBe(2000);
    expect(errorsOf(yaml("providers:", "  f:", "    type: file", "    timeout: 10ms"))[0]).toContain("providers.f.timeout");
  });

  test("no providers at all means the built-in file provider", () => {
    const { config } = parseConfig(yaml("secrets:", "  - name: db-password"), "dso.yaml", {});
    expect(Object.keys(config.providers)).toEqual(["file"]);
    expect(config.providers.file?.config).toEqual({ path: "/etc/dso/secrets" });
    expect(config.secrets[0]?.provider).toBe("file");
  });

  test("secrets get file injection into /run/secrets as root with mode 0400 by default", () => {
    const { config } = parseConfig(yaml("secrets:", "  - name: a"), "dso.yaml", {});
    expect(config.secrets[0]?.inject).toEqual({ type: "file", path: "/run/secrets", uid: 0, gid: 0, mode: 0o400 });
    expect(config.secrets[0]?.rotation).toEqual({ enabled: false, strategy: "restart", signal: "SIGHUP", healthCheckTimeoutMs: 60_000 });
    expect(config.secrets[0]?.mappings).toEqual({});
  });

  test("an empty file is the built-in default", () => {
    const { config } = parseConfig("# nothing yet\n", "dso.yaml", {});
    expect(config.secrets).toEqual([]);
    expect(config.providers.file?.type).toBe("file");
    expect(config.agent.watch.pollingIntervalMs).toBe(300_000);
  });

  test("`secrets: {}` (as in the Go DSO README) means no secrets", () => {
    expect(parseConfig(yaml("secrets: {}"), "dso.yaml", {}).config.secrets).toEqual([]);
  });

  test("modes are octal however they are written", () => {
    for (const written of ["0400", '"0400"', "400", "'400'", "0o400", '"0o400"']) {
      const { config } = parseConfig(yaml("defaults:", "  inject:", `    mode: ${written}`), "dso.yaml", {});
      expect(config.defaults.inject.mode).toBe(0o400);
    }
  });

  test("version accepts 1, 2, \"1\", \"v1\" and \"v2\"", () => {
    for (const [written, version] of [["1", 1], ["2", 2], ['"1"', 1], ["v1", 1], ['"v2"', 2], ["v2.0", 2]] as const) {
      expect(parseConfig(yaml(`version: ${written}`), "dso.yaml", {}).config.version).toBe(version);
    }
  });

  test("a secret's own inject fields override defaults field by field", () => {
    const text = yaml(
      "defaults:",
      "  inject:",
      "    path: /run/app",
      "    uid: 1000",
      "secrets:",
      "  - name: a",
      "    inject:",
      "      gid: 2000",
      "      mode: 0440",
    );
    expect(parseConfig(text, "dso.yaml", {}).config.secrets[0]?.inject).toEqual({
      type: "file",
      path: "/run/app",
      uid: 1000,
      gid: 2000,
      mode: 0o440,
    });
  });

  test("a per-secret rotation: false beats defaults.rotation.enabled: true", () => {
    const text = yaml("defaults:", "  rotation:", "    enabled: true", "secrets:", "  - name: a", "    rotation: false", "  - name: b");
    const { secrets } = parseConfig(text, "dso.yaml", {}).config;
    expect(secrets.map((s) => s.rotation.enabled)).toEqual([false, true]);
  });

  test("file settings on an env secret are warned about", () => {
    expect(warningsOf(yaml("secrets:", "  - name: a", "    inject:", "      type: env", "      path: /run/x"))).toEqual([
      "dso.yaml:5: secrets.0.inject.path: ignored for inject type env",
    ]);
  });

  test("numbers and booleans in config maps become strings", () => {
    const text = yaml("providers:", "  v:", "    type: vault", "    config:", "      kv_version: 2", "      tls_skip_verify: true");
    expect(parseConfig(text, "dso.yaml", {}).config.providers.v?.config).toEqual({ kv_version: "2", tls_skip_verify: "true" });
  });

  test("signals are normalised to their SIG name", () => {
    const text = yaml("agent:", "  rotation:", "    signal: usr1");
    expect(parseConfig(text, "dso.yaml", {}).config.agent.rotation.signal).toBe("SIGUSR1");
  });

  test("a short webhook token is accepted with a warning", () => {
    const text = yaml("agent:", "  watch:", "    webhook:", "      enabled: true", "      auth_token: short");
    expect(warningsOf(text)).toEqual([
      "dso.yaml:5: agent.watch.webhook.auth_token: is shorter than 16 characters; use a long random token",
    ]);
  });
});

describe("every problem at once, with the line and column where it is", () => {
  test("a wrong mappings entry is reported together with the other errors of the same secret", () => {
    const text = yaml(
      "secrets:",
      "  - name: app/db",
      '    inject: { type: file, mode: "0999" }',
      "    mappings:",
      "      password: a/b",
      "  - name: app/env",
      "    inject: { type: env, uid: x }",
      "    mappings:",
      "      token: 9TOKEN",
    );
    expect(errorsOf(text)).toEqual([
      'dso.yaml:3: secrets.0.inject.mode: must be an octal file mode from "0000" to "0777", such as "0400" (got "0999")',
      'dso.yaml:5: secrets.0.mappings.password: is a file name and must not contain "/" (got "a/b")',
      'dso.yaml:7: secrets.1.inject.uid: must be a whole number from 0 to 4294967294 (got "x")',
      'dso.yaml:9: secrets.1.mappings.token: must be a variable name: letters, digits and _, not starting with a digit (got "9TOKEN")',
    ]);
  });

  test("a YAML syntax error names the line and column of the real error and the parser's reason", () => {
    expect(errorsOf(yaml("providers:", "  file:", "    type: file", "secrets:", "  - name: a", "    key: value: other"))).toEqual([
      "dso.yaml:6:10: YAML syntax error: Nested mappings are not allowed in compact mappings",
    ]);
    expect(errorsOf(yaml("agent:", "\tcache: true"))).toEqual(["dso.yaml:2:1: YAML syntax error: Tabs are not allowed as indentation"]);
  });

  test("an unclosed quote is reported on the line that opens it, not at the end of the file", () => {
    expect(errorsOf(yaml("agent:", '  socket: "/run/dso.sock', "  cache: true", "secrets: []"))).toEqual([
      'dso.yaml:2: YAML syntax error: Missing closing "quote',
    ]);
  });

  test("mappings written the Go DSO docs' way round (ENV_NAME: secret/id) get a hint that the sides look swapped", () => {
    const errors = errorsOf(yaml("secrets:", "  - name: app/db", "    inject: env", "    mappings:", "      DB_PASSWORD: app/db/password"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toStartWith("dso.yaml:5: secrets.0.mappings.DB_PASSWORD: must be a variable name");
    expect(errors[0]).toContain("the two sides look swapped: mappings are <key inside the secret>: <name>, e.g. password: DB_PASSWORD");
  });

  test("the swap hint never quotes a target that came from a variable", () => {
    const errors = errorsOf(yaml("secrets:", "  - name: app/db", "    mappings:", "      DB_PASSWORD: ${TARGET}"), { TARGET: "hidden/planted-name" });
    expect(errors[0]).toContain("look swapped");
    expect(errors[0]).not.toContain("planted");
  });

  test("a correct mapping with an upper-case key gets no swap hint", () => {
    const errors = errorsOf(yaml("secrets:", "  - name: app/db", "    mappings:", "      API_KEY: a/b", "      password: c/d"));
    expect(errors[0]).toContain("look swapped");
    expect(errors[1]).not.toContain("look swapped");
  });
});

describe("metrics, audit and notifications settings", () => {
  test("all are off by default", () => {
    const { config } = parseConfig("", "dso.yaml", {});
    expect(config.agent.metrics).toEqual({ enabled: false });
    expect(config.agent.audit).toEqual({ enabled: false, output: "stderr" });
    expect(config.notifications).toEqual({ enabled: false, webhooks: [], queueSize: 100 });
  });

  test("a metrics listener or an audit file turns the feature on; a non-loopback listener is warned about", () => {
    const { config } = parseConfig(yaml("agent:", "  metrics:", "    listen: 127.0.0.1:9464", "  audit:", "    output: /var/log/dso-audit.log"), "dso.yaml", {});
    expect(config.agent.metrics).toEqual({ enabled: true, listen: "127.0.0.1:9464" });
    expect(config.agent.audit).toEqual({ enabled: true, output: "/var/log/dso-audit.log" });
    expect(warningsOf(yaml("agent:", "  metrics:", "    listen: 0.0.0.0:9464"))[0]).toStartWith("dso.yaml:3: agent.metrics.listen: is not a loopback address");
    expect(errorsOf(yaml("agent:", "  audit:", "    output: relative.log"))).toEqual(['dso.yaml:3: agent.audit.output: must be "stderr" or an absolute file path (got "relative.log")']);
  });

  test("the Go DSO's notifications key is read as written: webhooks, events, timeout, max_retries", () => {
    const text = yaml(
      "notifications:",
      "  enabled: true",
      "  timeout: 5s",
      "  max_retries: -1",
      "  events: [rotation_succeeded, rotation_failed, recovery_failed]",
      "  webhooks:",
      "    - url: https://hooks.example.com/dso?token=${HOOK_TOKEN}",
      "    - url: http://127.0.0.1:9000/hook",
      "      events: [delivery_failed]",
      "      headers:",
      "        Authorization: Bearer ${HOOK_TOKEN}",
    );
    const { config, warnings } = parseConfig(text, "dso.yaml", { HOOK_TOKEN: "planted-hook-token" });
    expect(config.notifications).toEqual({
      enabled: true,
      queueSize: 100,
      webhooks: [
        { url: "https://hooks.example.com/dso?token=planted-hook-token", events: ["rotation_succeeded", "rotation_failed"], headers: {}, timeoutMs: 5000, maxRetries: 0 },
        { url: "http://127.0.0.1:9000/hook", events: ["delivery_failed"], headers: { Authorization: "Bearer planted-hook-token" }, timeoutMs: 5000, maxRetries: 0 },
      ],
    });
    expect(warnings.map(formatIssue)).toEqual([
      "dso.yaml:5: notifications.events: recovery_failed: never sent (DSO does not roll containers back); events DSO sends: rotation_succeeded, rotation_failed, delivery_failed, provider_unavailable, provider_recovered",
    ]);
  });

  test("the Go DSO's documented example (docs/notifications.md) loads verbatim: timeout, max_retries, allow_insecure_http per webhook", () => {
    const goExample = [
      "notifications:",
      "  enabled: true",
      "  webhooks:",
      "    - url: https://hooks.example.com/dso",
      "      timeout: 10s          # per delivery attempt (default 10s)",
      "      max_retries: 2        # transient failures only (default 2; -1 = none)",
      "      events: [rotation_failed, recovery_failed]   # empty = all events",
      "    # Plain HTTP requires an explicit opt-in:",
      "    - url: http://monitoring.internal:9090/hook",
      "      allow_insecure_http: true",
    ].join("\n");
    const { config } = parseConfig(goExample, "dso.yaml", {});
    expect(config.notifications.webhooks).toEqual([
      { url: "https://hooks.example.com/dso", events: ["rotation_failed"], headers: {}, timeoutMs: 10_000, maxRetries: 2 },
      { url: "http://monitoring.internal:9090/hook", events: [...NOTIFICATION_EVENTS], headers: {}, timeoutMs: 10_000, maxRetries: 2 },
    ]);
  });

  test("a webhook's own timeout, max_retries and allow_insecure_http win over the top-level ones", () => {
    const text = yaml(
      "notifications:",
      "  enabled: true",
      "  timeout: 5s",
      "  max_retries: 3",
      "  webhooks:",
      "    - url: http://hooks.example.com/a",
      "      timeout: 2s",
      "      max_retries: -1",
      "      allow_insecure_http: true",
      "      events: []",
      "    - url: https://hooks.example.com/b",
    );
    const { config } = parseConfig(text, "dso.yaml", {});
    expect(config.notifications.webhooks).toEqual([
      { url: "http://hooks.example.com/a", events: [...NOTIFICATION_EVENTS], headers: {}, timeoutMs: 2000, maxRetries: 0 },
      { url: "https://hooks.example.com/b", events: [...NOTIFICATION_EVENTS], headers: {}, timeoutMs: 5000, maxRetries: 3 },
    ]);
    expect(errorsOf(yaml("notifications:", "  allow_insecure_http: true", "  webhooks:", "    - url: http://hooks.example.com/a", "      allow_insecure_http: false"))).toEqual([
      "dso.yaml:4: notifications.webhooks.0.url: is plain http to a non-loopback host: use https, or set notifications.allow_insecure_http: true",
    ]);
    const errors = errorsOf(yaml("notifications:", "  webhooks:", "    - url: https://x", "      max_retries: 11", "      timeout: soon"));
    expect(errors).toHaveLength(2);
    expect(errors[0]).toStartWith("dso.yaml:4: notifications.webhooks.0.max_retries: must be a whole number from -1 to 10");
    expect(errors[1]).toStartWith("dso.yaml:5: notifications.webhooks.0.timeout: ");
  });

  test("plain http to another host needs allow_insecure_http; URLs and headers are never quoted in errors", () => {
    expect(errorsOf(yaml("notifications:", "  enabled: true", "  webhooks:", "    - url: http://hooks.example.com/x?token=planted"))).toEqual([
      "dso.yaml:4: notifications.webhooks.0.url: is plain http to a non-loopback host: use https, or set notifications.allow_insecure_http: true",
    ]);
    expect(errorsOf(yaml("notifications:", "  webhooks:", "    - url: https://x", "      headers: { X-Token: [planted] }"))).toEqual([
      "dso.yaml:4: notifications.webhooks.0.headers.X-Token: must be a string, not a list",
    ]);
    expect(errorsOf(yaml("notifications:", "  webhooks:", "    - url: ftp://planted", "  max_retries: 99"))).toEqual([
      "dso.yaml:3: notifications.webhooks.0.url: must be an http(s) URL",
      'dso.yaml:4: notifications.max_retries: must be a whole number from -1 to 10 (got "99")',
    ]);
    expect(parseConfig(yaml("notifications:", "  enabled: true", "  allow_insecure_http: true", "  webhooks:", "    - url: http://hooks.example.com/x"), "dso.yaml", {}).config.notifications.webhooks).toHaveLength(1);
  });

  test("webhooks without enabled: true are warned about (the Go DSO's default is off)", () => {
    expect(warningsOf(yaml("notifications:", "  webhooks:", "    - url: https://hooks.example.com/x"))).toEqual([
      "dso.yaml:1: notifications: webhooks are configured but notifications.enabled is not true: nothing is sent",
    ]);
  });
});

describe("YAML aliases (found by test/fuzz)", () => {
  test("a self-referencing anchor is refused at its line instead of hanging the parser", () => {
    // fuzz counterexample: {"seed":0,"text":[{"op":"prepend","snippet":"a: &a {x: *a}\n"}]} hung `dso config validate`.
    expect(errorsOf(yaml("a: &a {x: *a}"))).toEqual([
      "dso.yaml:1: a.x: a YAML alias here refers to a value that contains it (a cycle); write the value out instead",
    ]);
    expect(errorsOf(yaml("secrets:", "  - &s {name: x, targets: {containers: [*s]}}"))[0]).toStartWith(
      "dso.yaml:2: secrets.0.targets.containers.0: a YAML alias here refers to a value that contains it",
    );
  });

  test("an alias bomb is refused without being expanded", () => {
    // Seven levels of nine aliases: 300 bytes that took 17 s and 270 MB to refuse before.
    const rows = ["  l0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
    for (let i = 1; i < 7; i++) rows.push(`  l${i}: &b${i} [${Array(9).fill(`*b${i - 1}`).join(", ")}]`);
    expect(errorsOf(yaml("agent:", ...rows, "  top: *b6"))).toEqual([
      "dso.yaml:1: agent: YAML aliases expand this to more than 100000 values; write the values out instead",
    ]);
  });

  test("ordinary aliases still work", () => {
    const { config } = parseConfig(yaml("providers:", "  a: &p {type: file}", "  b: *p"), "dso.yaml", {});
    expect(Object.keys(config.providers)).toEqual(["a", "b"]);
  });
});

describe("provider names in messages (found by test/fuzz)", () => {
  test("an invalid provider name is reported once and never listed raw in another message", () => {
    const errors = errorsOf(yaml("providers:", '  "aws-p\tod": {type: aws}', "  vault: {type: vault, config: {address: 'http://127.0.0.1:8200'}}", "secrets:", "  - name: x", "    provider: aws-prod"));
    expect(errors.join("\n")).not.toContain("\t");
    expect(errors.some((e) => e.includes("(configured: vault)"))).toBe(true);
  });
});
