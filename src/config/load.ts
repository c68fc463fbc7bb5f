/** Finding and reading dso.yaml from disk. */
import { existsSync, lstatSync, statSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
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
  /** Told why ./dso.yaml was skipped; default: a `warning:` line on stderr. */
  onSkipped?: (message: string) => void;
  /** The caller's uid (tests); default process.getuid(). */
  uid?: number;
}

/** Anyone but the owner may write: group or other write bit. */
const WRITABLE_BY_OTHERS = 0o022;
const STICKY = 0o1000;

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/**
 * Why ./dso.yaml must not be read, or undefined when it may. It may when no one but the caller
 * or root can have written it: a regular file (not a link that could be re-pointed) owned by the
 * caller or root and writable by nobody else, in a directory owned by the caller or root that
 * others cannot write (or that is sticky, like /tmp, so they cannot replace our file).
 */
export function untrustedLocalConfig(file: Stats, dir: Stats, uid: number): string | undefined {
  if (file.isSymbolicLink()) return "it is a symbolic link";
  if (!file.isFile()) return "it is not a regular file";
  if (file.uid !== uid && file.uid !== 0) return `owned by uid ${file.uid}, not by you (uid ${uid}) or root`;
  if (file.mode & WRITABLE_BY_OTHERS) return `writable by others than its owner (mode ${octal(file.mode)})`;
  if (dir.uid !== uid && dir.uid !== 0) return `its directory is owned by uid ${dir.uid}, who could replace it`;
  if (dir.mode & WRITABLE_BY_OTHERS && !(dir.mode & STICKY)) return `its directory is writable by others (mode ${octal(dir.mode)}), who could replace it`;
  return undefined;
}

/** ./dso.yaml when it exists and may be trusted; a skipped one is reported through onSkipped. */
function trustedLocalConfig(options: FindConfigOptions): string | null {
  const localPath = resolve(options.cwd ?? process.cwd(), LOCAL_CONFIG_NAME);
  let file: Stats;
  let dir: Stats;
  try {
    file = lstatSync(localPath);
    dir = statSync(dirname(localPath));
  } catch {
    return null;
  }
  const why = untrustedLocalConfig(file, dir, options.uid ?? process.getuid?.() ?? 0);
  if (why === undefined) return localPath;
  const report = options.onSkipped ?? ((message: string) => process.stderr.write(`warning: ${message}\n`));
  report(`ignoring ${localPath}: ${why}; using the built-in default (pass --config ${localPath} to use it anyway)`);
  return null;
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
 * Which dso.yaml to read: --config, else $DSO_CONFIG, else /etc/dso/dso.yaml, else ./dso.yaml
 * when it can be trusted (untrustedLocalConfig: skipped with a warning otherwise), else null (run
 * with the built-in default). An explicit path that does not exist is an error; an explicit path
 * is read whoever owns it (the caller named it).
 */
export function findConfigPath(options: FindConfigOptions): string | null {
  const env = options.env ?? process.env;
  if (options.flag) return requireExisting(options.flag, "--config");
  const fromEnv = env.DSO_CONFIG;
  if (fromEnv) return requireExisting(fromEnv, "DSO_CONFIG");
  const systemPath = options.systemPath ?? SYSTEM_CONFIG_PATH;
  if (isFile(systemPath)) return systemPath;
  return trustedLocalConfig(options);
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
