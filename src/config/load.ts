/** Finding and reading dso.yaml from disk. */
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { DsoError } from "../errors.ts";
import { builtinDefaultConfig, LOCAL_CONFIG_NAME, SYSTEM_CONFIG_PATH } from "./defaults.ts";
import type { Env } from "./env-expand.ts";
import type { ConfigIssue } from "./issues.ts";
import { parseConfig } from "./parse.ts";
import type { DsoConfig } from "./types.ts";

export interface FindConfigOptions {
  /** The --config flag. */
  flag?: string;
  env?: Env;
  /** Looked up instead of /etc/dso/dso.yaml (tests). */
  systemPath?: string;
  /** Directory searched for ./dso.yaml; defaults to the working directory. */
  cwd?: string;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function requireExisting(path: string, source: string): string {
  if (isFile(path)) return path;
  const what = existsSync(path) ? "is not a regular file" : "does not exist";
  throw new DsoError("CONFIG_NOT_FOUND", `config file ${path} (from ${source}) ${what}`, {
    hint: "check the path, or leave it out to use /etc/dso/dso.yaml, ./dso.yaml or the built-in default",
  });
}

/**
 * Which dso.yaml to read: --config, else $DSO_CONFIG, else /etc/dso/dso.yaml, else ./dso.yaml,
 * else null (run with the built-in default). An explicit path that does not exist is an error.
 */
export function findConfigPath(options: FindConfigOptions): string | null {
  const env = options.env ?? process.env;
  if (options.flag) return requireExisting(options.flag, "--config");
  const fromEnv = env.DSO_CONFIG;
  if (fromEnv) return requireExisting(fromEnv, "DSO_CONFIG");
  const systemPath = options.systemPath ?? SYSTEM_CONFIG_PATH;
  if (isFile(systemPath)) return systemPath;
  const localPath = resolve(options.cwd ?? process.cwd(), LOCAL_CONFIG_NAME);
  if (isFile(localPath)) return localPath;
  return null;
}

/** Reads and parses `path`; with null, returns the built-in default configuration. */
export async function loadConfig(
  path: string | null,
  env: Env = process.env,
): Promise<{ path: string | null; config: DsoConfig; warnings: ConfigIssue[] }> {
  if (path === null) return { path: null, config: builtinDefaultConfig(), warnings: [] };
  const file = Bun.file(path);
  if (!(await file.exists())) {
    throw new DsoError("CONFIG_NOT_FOUND", `config file ${path} does not exist`);
  }
  let text: string;
  try {
    text = await file.text();
  } catch (error) {
    throw new DsoError("CONFIG_INVALID", `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? "read error"}`, { cause: error });
  }
  const { config, warnings } = parseConfig(text, path, env);
  return { path, config, warnings };
}
