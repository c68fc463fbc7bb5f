/**
 * `docker dso ...`: the binary doubles as a Docker CLI plugin when linked as `docker-dso` into a
 * CLI plugins directory (install.sh does it). The Docker CLI first runs
 * `docker-dso docker-cli-plugin-metadata` and expects this JSON on stdout, then runs the plugin
 * as `docker-dso dso <args>`: the leading `dso` is the plugin's own name, not a command.
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

/** The arguments as the normal CLI reads them, or "metadata" for the handshake. */
export function cliPluginArgs(argv: string[]): string[] | "metadata" {
  if (argv[0] === METADATA_COMMAND) return "metadata";
  return argv[0] === PLUGIN_NAME ? argv.slice(1) : argv;
}
