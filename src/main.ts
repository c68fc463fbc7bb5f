#!/usr/bin/env bun
import { runCommand } from "citty";
import { checkArguments, resolveCommand, usageText } from "./cli/dispatch.ts";
import { cliPluginArgs, cliPluginMetadata } from "./cli/docker-cli-plugin.ts";
import { hiddenCommands, rootCommand } from "./cli/root.ts";
import { describeError, DsoError, exitCodeFor } from "./errors.ts";
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
  configureLogger({ level: level as LogLevelName, format });
}

async function main(rawArgv: string[]): Promise<number> {
  const argv = cliPluginArgs(rawArgv);
  if (argv === "metadata") {
    process.stdout.write(`${JSON.stringify(cliPluginMetadata())}\n`);
    return 0;
  }
  try {
    const resolved = await resolveCommand(rootCommand, argv, hiddenCommands);
    if (resolved.help || (argv.length === 0 && resolved.path.length === 0)) {
      const usage = await usageText(resolved);
      // citty colours its usage unconditionally; keep escape codes out of pipes and files.
      process.stdout.write(`${process.stdout.isTTY ? usage : usage.replace(/\x1b\[[0-9;]*m/g, "")}\n`);
      return 0;
    }
    await checkArguments(resolved);
    setUpLogging(argv, resolved.path[0]);
    if (resolved.path.length === 0) {
      throw new DsoError("USAGE", "no command given", { hint: "run 'dso --help' for usage" });
    }
    await runCommand(resolved.command, { rawArgs: resolved.args });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    process.stderr.write(`dso: ${describeError(error)}\n`);
    return exitCodeFor(error);
  }
}

// No top-level await: the bytecode-compiled binary is CommonJS.
void main(process.argv.slice(2)).then((code) => process.exit(code));
