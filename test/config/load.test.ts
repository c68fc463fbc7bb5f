import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DsoError } from "../../src/errors.ts";
import { builtinDefaultConfig, ConfigError, findConfigPath, loadConfig } from "../../src/config/index.ts";

let dir: string;
let systemPath: string;
let cwd: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "dso-config-"));
  systemPath = join(dir, "etc-dso.yaml");
  cwd = join(dir, "project");
  mkdirSync(cwd);
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof DsoError ? error.code : "not a DsoError";
  }
  return undefined;
}

describe("findConfigPath", () => {
  test("--config wins over DSO_CONFIG and the default locations", () => {
    const flag = join(dir, "flag.yaml");
    const fromEnv = join(dir, "env.yaml");
    for (const path of [flag, fromEnv, systemPath, join(cwd, "dso.yaml")]) writeFileSync(path, "secrets: []\n");
    expect(findConfigPath({ flag, env: { DSO_CONFIG: fromEnv }, systemPath, cwd })).toBe(flag);
  });

  test("DSO_CONFIG comes next", () => {
    const fromEnv = join(dir, "env.yaml");
    for (const path of [fromEnv, systemPath, join(cwd, "dso.yaml")]) writeFileSync(path, "secrets: []\n");
    expect(findConfigPath({ env: { DSO_CONFIG: fromEnv }, systemPath, cwd })).toBe(fromEnv);
  });

  test("then /etc/dso/dso.yaml, then ./dso.yaml", () => {
    writeFileSync(join(cwd, "dso.yaml"), "secrets: []\n");
    expect(findConfigPath({ env: {}, systemPath, cwd })).toBe(join(cwd, "dso.yaml"));
    writeFileSync(systemPath, "secrets: []\n");
    expect(findConfigPath({ env: {}, systemPath, cwd })).toBe(systemPath);
  });

  test("null when there is no config anywhere", () => {
    expect(findConfigPath({ env: {}, systemPath, cwd })).toBeNull();
  });

  test("an explicit path that does not exist is CONFIG_NOT_FOUND", () => {
    const missing = join(dir, "missing.yaml");
    expect(codeOf(() => findConfigPath({ flag: missing, env: {}, systemPath, cwd }))).toBe("CONFIG_NOT_FOUND");
    expect(codeOf(() => findConfigPath({ env: { DSO_CONFIG: missing }, systemPath, cwd }))).toBe("CONFIG_NOT_FOUND");
  });

  test("an explicit path that is a directory is CONFIG_NOT_FOUND", () => {
    expect(codeOf(() => findConfigPath({ flag: cwd, env: {}, systemPath, cwd }))).toBe("CONFIG_NOT_FOUND");
  });

  test("an empty DSO_CONFIG counts as unset", () => {
    writeFileSync(join(cwd, "dso.yaml"), "secrets: []\n");
    expect(findConfigPath({ env: { DSO_CONFIG: "" }, systemPath, cwd })).toBe(join(cwd, "dso.yaml"));
  });
});

describe("loadConfig", () => {
  test("without a path returns the built-in default: one file provider on /etc/dso/secrets, no secrets", async () => {
    const { path, config, warnings } = await loadConfig(null, {});
    expect(path).toBeNull();
    expect(warnings).toEqual([]);
    expect(config).toEqual(builtinDefaultConfig());
    expect(config.providers).toEqual({
      file: { name: "file", type: "file", auth: { params: {} }, config: { path: "/etc/dso/secrets" }, retry: { attempts: 3, backoffMs: 2000 }, allowUndeclared: true },
    });
    expect(config.secrets).toEqual([]);
  });

  test("reads, expands and resolves a file", async () => {
    const path = join(dir, "dso.yaml");
    writeFileSync(path, "providers:\n  v:\n    type: vault\n    config:\n      token: ${TOKEN}\nmode: local\n");
    const { config, warnings } = await loadConfig(path, { TOKEN: "t0k3n" });
    expect(config.providers.v?.config.token).toBe("t0k3n");
    expect(warnings.map((w) => `${w.file}:${w.line}: ${w.path}`)).toEqual([`${path}:6: mode`]);
  });

  test("errors name the file by the path it was loaded from", async () => {
    const path = join(dir, "dso.yaml");
    writeFileSync(path, "secrets:\n  - name: a\n    bogus: 1\n");
    const error = await loadConfig(path, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${path}:3: secrets.0.bogus: unknown key "bogus"`);
  });

  test("a path that does not exist is CONFIG_NOT_FOUND", async () => {
    const error = await loadConfig(join(dir, "nope.yaml"), {}).catch((e: unknown) => e);
    expect((error as DsoError).code).toBe("CONFIG_NOT_FOUND");
  });

  test("each call returns a fresh default that callers may change", async () => {
    const first = await loadConfig(null, {});
    first.config.secrets.push({} as never);
    expect((await loadConfig(null, {})).config.secrets).toEqual([]);
  });
});
