/**
 * Splits `dso up|down <args>` into compose's global options and the verb's own arguments, and
 * finds the compose files compose itself would read. Passing one more `-f` turns compose's own
 * discovery off, so DSO repeats it: `-f/--file` (relative to `--project-directory`, else the
 * working directory), else `COMPOSE_FILE` (split on `COMPOSE_PATH_SEPARATOR`, default `:`; from the
 * environment, else the project directory's `.env` or `--env-file`), else
 * the first supported name in the directory or its nearest parent that has one, plus that
 * directory's override file (docker-compose 1.x `get_default_config_files`; Compose v2 the same
 * with its own name order).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { DsoError } from "../../errors.ts";

export type ComposeFlavour = "v1" | "v2";

/** Global options that take a value (docker-compose 1.29 and Compose v2). */
const GLOBAL_WITH_VALUE = new Set([
  "-f", "--file", "-p", "--project-name", "--profile", "-c", "--context", "--log-level", "--ansi", "-H", "--host",
  "--tlscacert", "--tlscert", "--tlskey", "--project-directory", "--env-file", "--parallel", "--progress",
]);
const GLOBAL_FLAGS = new Set(["--verbose", "--no-ansi", "--tls", "--tlsverify", "--skip-hostname-check", "--compatibility", "--dry-run"]);

export interface ComposeInvocation {
  /** Global options other than -f/--file, in order. */
  globals: string[];
  /** -f/--file values as given. */
  files: string[];
  projectDirectory?: string;
  /** --env-file as given (compose reads `<project directory>/.env` without it). */
  envFile?: string;
  /** The verb's own arguments and services, in order. */
  verbArgs: string[];
}

export function splitArguments(args: readonly string[]): ComposeInvocation {
  const out: ComposeInvocation = { globals: [], files: [], verbArgs: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      out.verbArgs.push(...args.slice(i));
      break;
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (GLOBAL_FLAGS.has(name)) {
      out.globals.push(arg);
      continue;
    }
    // -fFILE (short option glued to its value), as docopt and cobra accept.
    const glued = /^-([fpcH])(.+)$/.exec(arg);
    const option = glued ? `-${glued[1]}` : name;
    if (!GLOBAL_WITH_VALUE.has(option)) {
      out.verbArgs.push(arg);
      continue;
    }
    let value: string | undefined = glued ? glued[2] : eq > 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new DsoError("USAGE", `${option} needs a value`);
    if (option === "-f" || option === "--file") out.files.push(value);
    else {
      if (option === "--project-directory") out.projectDirectory = value;
      if (option === "--env-file") out.envFile = value;
      out.globals.push(option, value);
    }
  }
  return out;
}

const NAMES: Record<ComposeFlavour, { files: string[]; overrides: string[] }> = {
  v1: {
    files: ["docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"],
    overrides: ["docker-compose.override.yml", "docker-compose.override.yaml", "compose.override.yml", "compose.override.yaml"],
  },
  v2: {
    files: ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"],
    overrides: ["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"],
  },
};

/**
 * The COMPOSE_FILE and COMPOSE_PATH_SEPARATOR lines of a compose `.env` file (`KEY=value`,
 * optionally quoted; `#` comments); empty when the file is absent.
 */
export function readDotEnv(path: string): { COMPOSE_FILE?: string; COMPOSE_PATH_SEPARATOR?: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?(COMPOSE_FILE|COMPOSE_PATH_SEPARATOR)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const quoted = /^(["'])(.*)\1$/.exec(value);
    if (quoted) value = quoted[2]!;
    else value = value.replace(/\s+#.*$/, "");
    out[m[1]!] = value;
  }
  return out;
}

/** The compose files compose would read, as absolute paths. */
export function discoverFiles(
  inv: ComposeInvocation,
  flavour: ComposeFlavour,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): string[] {
  const base = resolve(cwd, inv.projectDirectory ?? ".");
  if (inv.files.length > 0) return inv.files.map((f) => (f === "-" ? f : isAbsolute(f) ? f : resolve(base, f)));
  // The environment wins over the project's .env file, as in compose.
  const dotEnv = readDotEnv(resolve(base, inv.envFile ?? ".env"));
  const composeFile = env.COMPOSE_FILE ?? dotEnv.COMPOSE_FILE;
  if (composeFile) {
    const separator = env.COMPOSE_PATH_SEPARATOR ?? dotEnv.COMPOSE_PATH_SEPARATOR ?? ":";
    return composeFile.split(separator).filter(Boolean).map((f) => resolve(base, f));
  }
  const names = NAMES[flavour];
  for (let dir = base; ; dir = dirname(dir)) {
    const found = names.files.find((n) => existsSync(join(dir, n)));
    if (found) return [join(dir, found), ...names.overrides.filter((n) => existsSync(join(dir, n))).map((n) => join(dir, n))];
    if (dirname(dir) === dir) break;
  }
  throw new DsoError("USAGE", `no compose file found in ${base} or its parents (${names.files.join(", ")})`, {
    hint: "give one with -f FILE",
  });
}
