import { createConsola, type ConsolaInstance, type LogObject } from "consola";
import { escapeControls, escapeJsonLine } from "./escape.ts";
import { redact } from "./redact.ts";

/** What a component needs of a logger: a message and value-free fields, at four levels. */
export interface FieldLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogFormat = "pretty" | "json";
export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";

const LEVELS: Record<LogLevelName, number> = { silent: -999, error: 0, warn: 1, info: 3, debug: 4, trace: 5 };
export const LOG_LEVEL_NAMES = Object.keys(LEVELS) as LogLevelName[];

function levelName(level: number): string {
  if (level <= 0) return "error";
  if (level === 1) return "warn";
  if (level <= 3) return "info";
  if (level === 4) return "debug";
  return "trace";
}

function formatArg(arg: unknown): string {
  if (arg instanceof Error) return arg.message;
  if (typeof arg === "string") return arg;
  try {
    return JSON.stringify(arg);
  } catch {
    return String(arg);
  }
}

/** Keys the logger sets itself: a field of that name (a provider child's `"tag":"audit"`) cannot replace them. */
const AGENT_KEYS = new Set(["time", "level", "tag", "msg"]);

/** The caller's fields, a field named like an agent key renamed `field.<key>` so it stays data. */
function callerFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[AGENT_KEYS.has(key) ? `field.${key}` : key] = value;
  return out;
}

/**
 * Where a line goes: stderr, or with split streams (the managed plugin: dockerd logs a plugin's
 * stdout at level info and its stderr at level error) stdout for everything below error.
 */
let splitStreams = false;
function streamFor(level: number): NodeJS.WriteStream {
  return splitStreams && level > LEVELS.error ? process.stdout : process.stderr;
}

/**
 * One JSON object per line on stderr: time, level, tag, msg and the fields of a trailing object.
 * Redacted first (values are registered in their plain and JSON forms), then escaped.
 */
const jsonReporter = {
  log(entry: LogObject) {
    const args = [...entry.args];
    const last = args.at(-1);
    const fields =
      args.length > 1 && last !== null && typeof last === "object" && !(last instanceof Error)
        ? (args.pop() as Record<string, unknown>)
        : {};
    const line = {
      time: entry.date.toISOString(),
      level: levelName(entry.level),
      ...(entry.tag ? { tag: entry.tag } : {}),
      msg: args.map(formatArg).join(" "),
      ...callerFields(fields),
    };
    streamFor(entry.level).write(`${escapeJsonLine(redact(JSON.stringify(line)))}\n`);
  },
};

/** Human lines on stderr: `LEVEL [tag] message key=value`, controls in any part escaped (one line each). */
const prettyReporter = {
  log(entry: LogObject) {
    const args = [...entry.args];
    const last = args.at(-1);
    let fields = "";
    if (args.length > 1 && last !== null && typeof last === "object" && !(last instanceof Error)) {
      args.pop();
      fields = Object.entries(callerFields(last as Record<string, unknown>))
        .map(([k, v]) => ` ${k}=${formatArg(v)}`)
        .join("");
    }
    const tag = entry.tag ? `[${entry.tag}] ` : "";
    const level = levelName(entry.level).toUpperCase().padEnd(5);
    streamFor(entry.level).write(`${escapeControls(redact(`${level} ${tag}${args.map(formatArg).join(" ")}${fields}`))}\n`);
  },
};

let current: ConsolaInstance = build("info", "pretty");
let currentLevel: LogLevelName = "info";

/** The configured level, passed on to provider processes so they filter at the source. */
export function currentLogLevel(): LogLevelName {
  return currentLevel;
}

/** Whether a message at `level` passes a logger configured at `threshold`. */
export function levelEnabled(level: LogLevelName, threshold: LogLevelName): boolean {
  return LEVELS[level] <= LEVELS[threshold];
}

function build(level: LogLevelName, format: LogFormat): ConsolaInstance {
  return createConsola({
    level: LEVELS[level],
    reporters: [format === "json" ? jsonReporter : prettyReporter],
  });
}

/** `splitStreams`: lines below error go to stdout (see streamFor); the agent only, never a provider (its stdout is the protocol). */
export function configureLogger(options: { level: LogLevelName; format: LogFormat; splitStreams?: boolean }): void {
  current = build(options.level, options.format);
  currentLevel = options.level;
  splitStreams = options.splitStreams === true;
}

/** The process logger; `log.withTag("aws")` for a component. */
export const log: Pick<ConsolaInstance, "error" | "warn" | "info" | "debug" | "trace"> & {
  withTag(tag: string): ConsolaInstance;
} = {
  error: (...a: unknown[]) => current.error(...(a as [unknown])),
  warn: (...a: unknown[]) => current.warn(...(a as [unknown])),
  info: (...a: unknown[]) => current.info(...(a as [unknown])),
  debug: (...a: unknown[]) => current.debug(...(a as [unknown])),
  trace: (...a: unknown[]) => current.trace(...(a as [unknown])),
  withTag: (tag: string) => current.withTag(tag),
} as never;
