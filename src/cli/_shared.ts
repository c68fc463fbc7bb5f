import type { ArgsDef } from "citty";
import { LOG_LEVEL_NAMES } from "../log/logger.ts";
import { formatTable as renderTable, type TableOptions } from "./table.ts";
import { tableWidth } from "./terminal.ts";

/** Flags every command accepts. */
export const globalArgs = {
  "log-level": {
    type: "string",
    description: `Log level: ${LOG_LEVEL_NAMES.join(", ")}`,
    valueHint: "level",
  },
  "log-format": {
    type: "string",
    description: "Log format: pretty or json (default: pretty on a terminal; json for the agent otherwise)",
    valueHint: "format",
  },
} as const satisfies ArgsDef;

export const configArg = {
  config: {
    type: "string",
    alias: "c",
    description: "Path to dso.yaml (default: $DSO_CONFIG, /etc/dso/dso.yaml, ./dso.yaml)",
    valueHint: "file",
  },
} as const satisfies ArgsDef;

export const jsonArg = {
  json: { type: "boolean", description: "Print JSON instead of a table" },
} as const satisfies ArgsDef;

/** A table of rows with aligned columns, as wide as COLUMNS or the terminal allows; whole when piped. */
export function formatTable(header: string[], rows: string[][], options: TableOptions = {}): string {
  return renderTable(header, rows, { width: tableWidth(process.stdout), ...options });
}

export const socketArg = {
  socket: {
    type: "string",
    description:
      "Agent socket (default: $DSO_SOCKET, else agent.socket from dso.yaml or /run/docker/plugins/dso.sock, else agent.group_socket or /run/dso/control/dso.sock when the first is out of reach)",
    valueHint: "path",
  },
} as const satisfies ArgsDef;

/** "2m ago" style ages for tables. */
export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** The flags of every command that talks to the agent. */
export const agentClientArgs = { ...socketArg, ...configArg, ...jsonArg, ...globalArgs } as const satisfies ArgsDef;

export const secretPositional = {
  secret: { type: "positional", required: true, description: "Secret name (secrets[].name)" },
} as const satisfies ArgsDef;
