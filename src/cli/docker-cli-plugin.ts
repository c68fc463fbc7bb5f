/**
 * `docker dso ...`: the binary doubles as a Docker CLI plugin when linked as `docker-dso` into a
 * CLI plugins directory (install.sh does it). The Docker CLI first runs
 * `docker-dso docker-cli-plugin-metadata` and expects this JSON on stdout, then runs the plugin
 * as `docker-dso <docker's own global flags> dso <args>` (it passes its whole command line): the
 * flags before `dso` are Docker's (`--context`, `-H`, `-D`, `--log-level`, `--config`, TLS), turned
 * here into the environment Docker's own tools read, so the daemon DSO talks to is the one that
 * context uses; the `dso` is the plugin's own name, not a command.
 */
import { versionInfo } from "../version.ts";

export const METADATA_COMMAND = "docker-cli-plugin-metadata";
/** The word the Docker CLI puts before the user's arguments. */
export const PLUGIN_NAME = "dso";

export interface CliPluginMetadata {
  SchemaVersion: "0.1.0";
  Vendor: string;
  Version: string;
  ShortDescription: string;
  URL: string;
}

export function cliPluginMetadata(): CliPluginMetadata {
  return {
    SchemaVersion: "0.1.0",
    Vendor: "DSO project",
    Version: versionInfo().version,
    ShortDescription: "Docker Secret Operator: secrets delivered into containers in RAM",
    URL: "https://github.com/dso-project/dso",
  };
}

/** Docker's global flags that take a value, by every spelling, with the variable each sets. */
const VALUE_FLAGS: Record<string, string> = {
  "--context": "DOCKER_CONTEXT",
  "-c": "DOCKER_CONTEXT",
  "--host": "DOCKER_HOST",
  "-H": "DOCKER_HOST",
  "--config": "DOCKER_CONFIG",
  "--log-level": "DSO_LOG_LEVEL",
  "-l": "DSO_LOG_LEVEL",
  "--tlscacert": "",
  "--tlscert": "",
  "--tlskey": "",
};
const BOOLEAN_FLAGS: Record<string, [string, string]> = {
  "--debug": ["DSO_LOG_LEVEL", "debug"],
  "-D": ["DSO_LOG_LEVEL", "debug"],
  "--tlsverify": ["DOCKER_TLS_VERIFY", "1"],
  "--tls": ["", ""],
};
/** Docker's log levels (logrus) in DSO's names. */
const LOG_LEVELS: Record<string, string> = { debug: "debug", info: "info", warn: "warn", error: "error", fatal: "error", panic: "error" };

export interface CliPluginInvocation {
  args: string[];
  /** Variables to set before anything reads the environment. */
  env: Record<string, string>;
}

/**
 * Docker's global flags before the plugin's name, as environment variables, and where the
 * plugin's name stands (-1 when the words are not `<flags> dso ...`). `--tlscacert` names a file
 * Docker itself reads; DSO takes its directory as DOCKER_CERT_PATH (Docker's own convention:
 * ca.pem, cert.pem, key.pem there).
 */
export function dockerGlobalFlags(argv: readonly string[]): { env: Record<string, string>; at: number } {
  const env: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (!flag.startsWith("-")) return { env, at: flag === PLUGIN_NAME ? i : -1 };
    const eq = flag.startsWith("--") ? flag.indexOf("=") : -1;
    const name = eq > 0 ? flag.slice(0, eq) : flag;
    const boolean = BOOLEAN_FLAGS[name];
    if (boolean) {
      if (boolean[0]) env[boolean[0]] = boolean[1];
      continue;
    }
    if (!(name in VALUE_FLAGS)) return { env, at: -1 };
    const value = eq > 0 ? flag.slice(eq + 1) : argv[++i];
    if (value === undefined) return { env, at: -1 };
    if (name === "--tlscacert") env.DOCKER_CERT_PATH = value.replace(/\/[^/]*$/, "") || "/";
    const variable = VALUE_FLAGS[name]!;
    if (variable === "DSO_LOG_LEVEL") env.DSO_LOG_LEVEL = LOG_LEVELS[value.toLowerCase()] ?? "info";
    else if (variable) env[variable] = value;
  }
  return { env, at: -1 };
}

export interface ContextEndpoint {
  /** DOCKER_HOST for the context's daemon. */
  host: string;
  /** The context carries TLS material (ca/cert/key) for that daemon. */
  tls: boolean;
}

/**
 * The endpoint of a Docker context (`docker context inspect`), so DSO's own Docker client, which
 * reads DOCKER_HOST only, talks to that context's daemon. `default` is DOCKER_HOST or the local socket.
 */
export function contextEndpoint(context: string, env: Readonly<Record<string, string | undefined>>): ContextEndpoint | undefined {
  if (context === "default") return env.DOCKER_HOST ? { host: env.DOCKER_HOST, tls: false } : undefined;
  const run = Bun.spawnSync(["docker", "context", "inspect", context, "--format", "{{json .}}"], {
    env: Object.fromEntries(Object.entries(env).filter(([k, v]) => v !== undefined && k !== "DOCKER_CONTEXT" && k !== "DOCKER_HOST")) as Record<string, string>,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (run.exitCode !== 0) return undefined;
  try {
    const inspect = JSON.parse(run.stdout.toString()) as { Endpoints?: { docker?: { Host?: string } }; TLSMaterial?: { docker?: unknown[] } };
    const host = inspect.Endpoints?.docker?.Host;
    if (!host) return undefined;
    return { host, tls: (inspect.TLSMaterial?.docker?.length ?? 0) > 0 };
  } catch {
    return undefined;
  }
}

/**
 * The arguments as the normal CLI reads them, or "metadata" for the handshake. Docker's flags are
 * read only when the words are `<flags> dso ...`, which a direct `dso` invocation never starts with
 * (its own flags are followed by a command, not by `dso`).
 */
export function cliPluginArgs(argv: string[]): CliPluginInvocation | "metadata" {
  if (argv[0] === METADATA_COMMAND) return "metadata";
  if (argv[0] === PLUGIN_NAME) return { args: argv.slice(1), env: {} };
  if (!argv[0]?.startsWith("-")) return { args: argv, env: {} };
  const { env, at } = dockerGlobalFlags(argv);
  return at < 0 ? { args: argv, env: {} } : { args: argv.slice(at + 1), env };
}
