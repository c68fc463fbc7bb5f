#!/usr/bin/env bun
import { runCommand } from "citty";
import { checkArguments, resolveCommand, type ResolvedCommand } from "./cli/dispatch.ts";
import { cliPluginArgs, cliPluginMetadata, contextEndpoint } from "./cli/docker-cli-plugin.ts";
import { hiddenCommands, passthroughCommands, rootCommand } from "./cli/root.ts";
import { colorEnabled, outputWidth } from "./cli/terminal.ts";
import { drained, trackBacklog } from "./cli/output-drain.ts";
import { renderHelp } from "./cli/usage.ts";
import { formatVersionLine, versionInfo } from "./version.ts";
import { cliErrorLine, DsoError, exitCodeFor } from "./errors.ts";
import { configureLogger, LOG_LEVEL_NAMES, type LogFormat, type LogLevelName } from "./log/logger.ts";

/** Commands whose logs are read by machines when no one watches a terminal. */
const DAEMON_COMMANDS = new Set(["agent", "provider"]);

function flagValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}`) return args[i + 1];
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

function setUpLogging(argv: string[], commandName: string | undefined): void {
  const level = flagValue(argv, "log-level") ?? process.env.DSO_LOG_LEVEL ?? "info";
  if (!LOG_LEVEL_NAMES.includes(level as LogLevelName)) {
    throw new DsoError("USAGE", `--log-level must be one of ${LOG_LEVEL_NAMES.join(", ")}, not "${level}"`);
  }
  const explicit = flagValue(argv, "log-format") ?? process.env.DSO_LOG_FORMAT;
  if (explicit !== undefined && explicit !== "pretty" && explicit !== "json") {
    throw new DsoError("USAGE", `--log-format must be pretty or json, not "${explicit}"`);
  }
  const daemon = commandName !== undefined && DAEMON_COMMANDS.has(commandName);
  const format: LogFormat = (explicit as LogFormat | undefined) ?? (daemon && !process.stderr.isTTY ? "json" : "pretty");
  // The managed plugin sets DSO_LOG_STREAMS=split: dockerd logs a plugin's stderr as level=error.
  const splitStreams = commandName === "agent" && process.env.DSO_LOG_STREAMS === "split";
  configureLogger({ level: level as LogLevelName, format, splitStreams });
}

/** A daemon on this host: a unix socket, or TCP to the loopback address. */
function isLocalDockerHost(host: string): boolean {
  return /^(unix:\/\/|tcp:\/\/(localhost|127\.0\.0\.1|\[::1\])(:|\/|$))/.test(host);
}

/**
 * `docker --context X dso ...` / `docker -H ... dso ...`: that daemon becomes DOCKER_HOST for DSO
 * and compose alike; one on another host is remembered, so agent commands (which reach this
 * host's agent socket) refuse instead of answering for the wrong host.
 */
function applyDockerFlags(env: Record<string, string>): void {
  Object.assign(process.env, env);
  if (env.DOCKER_HOST) {
    if (!isLocalDockerHost(env.DOCKER_HOST)) process.env.DSO_REMOTE_CONTEXT = `-H ${env.DOCKER_HOST}`;
    return;
  }
  if (!env.DOCKER_CONTEXT) return;
  const endpoint = contextEndpoint(env.DOCKER_CONTEXT, process.env);
  if (env.DOCKER_CONTEXT !== "default" && !endpoint) throw new DsoError("USAGE", `docker context "${env.DOCKER_CONTEXT}" not found or has no Docker endpoint`);
  if (endpoint?.tls) {
    // Passing on only its address would drop the certificates: refused, as DOCKER_TLS_VERIFY is.
    throw new DsoError("USAGE", `docker context "${env.DOCKER_CONTEXT}" uses TLS (${endpoint.host}), which DSO does not support yet`, {
      hint: "run dso on that Docker host, against its unix socket",
    });
  }
  if (endpoint) {
    process.env.DOCKER_HOST = endpoint.host;
    // The agent's control socket is on this host: agent commands must not pretend to reach that one.
    if (!isLocalDockerHost(endpoint.host)) process.env.DSO_REMOTE_CONTEXT = `context ${env.DOCKER_CONTEXT} (${endpoint.host})`;
  }
  // The endpoint is resolved: compose and docker must not see a context and a host that disagree.
  delete process.env.DOCKER_CONTEXT;
}

const VERSION_FLAGS = new Set(["--version", "-v"]);

async function printHelp(resolved: ResolvedCommand): Promise<void> {
  const text = await renderHelp({
    path: resolved.path,
    command: resolved.command,
    width: outputWidth(process.stdout),
    color: colorEnabled(process.stdout),
  });
  process.stdout.write(`${text}\n`);
}

async function main(rawArgv: string[]): Promise<number> {
  const invocation = cliPluginArgs(rawArgv);
  if (invocation === "metadata") {
    process.stdout.write(`${JSON.stringify(cliPluginMetadata())}\n`);
    return 0;
  }
  const argv = invocation.args;
  try {
    applyDockerFlags(invocation.env);
    // `dso help [command...]` is `dso [command...] --help`, as in git, docker and kubectl.
    if (argv[0] === "help") {
      await printHelp(await resolveCommand(rootCommand, argv.slice(1).filter((a) => !a.startsWith("-")), hiddenCommands));
      return 0;
    }
    if (argv.length > 0 && VERSION_FLAGS.has(argv[0]!)) {
      process.stdout.write(`${formatVersionLine(versionInfo())}\n`);
      return 0;
    }
    const passthrough = argv[0] !== undefined && Object.hasOwn(passthroughCommands, argv[0]) ? passthroughCommands[argv[0]] : undefined;
    if (passthrough && !argv.includes("--help")) {
      setUpLogging([], argv[0]);
      return await passthrough(argv.slice(1));
    }
    const resolved = await resolveCommand(rootCommand, argv, hiddenCommands);
    if (resolved.help || (argv.length === 0 && resolved.path.length === 0)) {
      await printHelp(resolved);
      return 0;
    }
    await checkArguments(resolved);
    setUpLogging(argv, resolved.path[0]);
    if (resolved.path.length === 0) {
      throw new DsoError("USAGE", "no command given", { hint: "run 'dso help' for usage" });
    }
    await runCommand(resolved.command, { rawArgs: resolved.args });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    process.stderr.write(`${cliErrorLine(error)}\n`);
    return exitCodeFor(error);
  }
}

// No top-level await: the bytecode-compiled binary is CommonJS.
trackBacklog(process.stdout);
trackBacklog(process.stderr);
void main(process.argv.slice(2)).then(async (code) => {
  // process.exit drops what is still queued for a pipe (a slow `| jq`): wait for it first.
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
});
