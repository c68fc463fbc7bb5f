import type { ArgsDef } from "citty";
import { LOG_LEVEL_NAMES } from "../log/logger.ts";

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

/** Print a table of rows with aligned columns. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
