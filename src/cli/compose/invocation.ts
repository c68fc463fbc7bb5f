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
    const m = /^\s*(?:export\s+)?(COMPOSE_FILE|COMPOSE_PATH_SEPARATOR)\s*[=:]\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    const raw = m[2]!;
    // A quoted value ends at its closing quote (a comment may follow); an unquoted one at " #".
    const quoted = /^(["'])(.*?)\1(\s+#.*)?$/.exec(raw);
    out[m[1]!] = quoted ? quoted[2]! : raw.replace(/\s+#.*$/, "");
  }
  return out;
}

export interface Discovered {
  files: string[];
  /**
   * The dotenv file whose COMPOSE_FILE chose the files, when compose would no longer read it
   * itself once `dso up` passes them with -f (v2 then reads the first file's directory's .env):
   * passed on with --env-file so its other variables (COMPOSE_PROJECT_NAME, TAG…) still apply.
   */
  envFile?: string;
}

/** The dotenv file compose reads: --env-file (v2: from the working directory; v1: the project directory), else <project directory>/.env. */
function dotEnvPath(inv: ComposeInvocation, flavour: ComposeFlavour, cwd: string, base: string): string {
  if (inv.envFile !== undefined) return resolve(flavour === "v2" ? cwd : base, inv.envFile);
  return resolve(base, ".env");
}

/** The compose files compose would read, as absolute paths. */
export function discoverFiles(
  inv: ComposeInvocation,
  flavour: ComposeFlavour,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): string[] {
  return discover(inv, flavour, env, cwd).files;
}

/** The compose files compose would read, and the dotenv file to pass on (see Discovered). */
export function discover(
  inv: ComposeInvocation,
  flavour: ComposeFlavour,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): Discovered {
  const base = resolve(cwd, inv.projectDirectory ?? ".");
  if (inv.files.length > 0) return { files: inv.files.map((f) => (f === "-" ? f : isAbsolute(f) ? f : resolve(base, f))) };
  // The environment wins over the project's .env file, as in compose.
  const envPath = dotEnvPath(inv, flavour, cwd, base);
  const dotEnv = readDotEnv(envPath);
  const composeFile = env.COMPOSE_FILE ?? dotEnv.COMPOSE_FILE;
  if (composeFile) {
    const separator = env.COMPOSE_PATH_SEPARATOR ?? dotEnv.COMPOSE_PATH_SEPARATOR ?? ":";
    const files = composeFile.split(separator).filter(Boolean).map((f) => resolve(base, f));
    return inv.envFile === undefined && existsSync(envPath) ? { files, envFile: envPath } : { files };
  }
  const names = NAMES[flavour];
  for (let dir = base; ; dir = dirname(dir)) {
    const found = names.files.find((n) => existsSync(join(dir, n)));
    if (found) {
      const files = [join(dir, found), ...names.overrides.filter((n) => existsSync(join(dir, n))).map((n) => join(dir, n))];
      // Found in a parent: compose reads the .env of the project directory, which is where the file is.
      return { files };
    }
    if (dirname(dir) === dir) break;
  }
  throw new DsoError("USAGE", `no compose file found in ${base} or its parents (${names.files.join(", ")})`, {
    hint: "give one with -f FILE",
  });
}
