/**
 * The audit trail: one JSON line per delivery, rotation, strategy run, volume Mount/Unmount and
 * call on the agent's sockets (control API and Docker plugin protocol, refused calls included),
 * written to stderr (tagged `"tag":"audit"`, so it can be told apart from log lines) or appended
 * to a file the user names. Only the fields of
 * AuditEvent are written, and they are names, short versions, modes and codes: never a value.
 * Error messages pass through the log redactor as a last line of defence. Schema: docs/audit.md.
 */
import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { DsoError } from "../errors.ts";
import { escapeJsonLine } from "../log/escape.ts";
import { redact } from "../log/redact.ts";

export const AUDIT_SCHEMA_VERSION = 1;
export const AUDIT_TAG = "audit";
/** Versions are keyed fingerprint tokens or provider version ids: 12 characters identify one in a log. */
export const SHORT_VERSION_LENGTH = 12;
const MAX_ERROR_LENGTH = 300;

export type AuditEventName = "delivery" | "rotation" | "strategy" | "mount" | "unmount" | "api" | "leak" | "leftover_reference";

/** What caused the action (the same words as in the logs). */
export type AuditTrigger = "start" | "poll" | "webhook" | "event" | "reconcile" | "sync" | "rotate" | "inject" | "mount" | "reload" | "fetch" | "lease";

export interface AuditEvent {
  event: AuditEventName;
  /** "ok" or the DsoError code. */
  outcome: string;
  container?: { id: string; name?: string };
  secrets?: { name: string; version?: string }[];
  mode?: string;
  path?: string;
  strategy?: string;
  /** What the strategy did: "signal SIGHUP", "restart", "replaced by <id>", "none". */
  action?: string;
  trigger?: AuditTrigger;
  volume?: string;
  /** The names of a plugin call's volume options (never their values). */
  options?: string[];
  /** The container name or id as a control API caller wrote it. */
  target?: string;
  /** dockerd's mount id for Mount/Unmount. */
  mountId?: string;
  request?: { method: string; path: string; status: number };
  /** The caller's uid, from the socket peer, when the transport tells it. */
  callerUid?: number;
  error?: unknown;
  durationMs?: number;
}

export interface AuditSink {
  write(line: string): void;
  close(): void;
}

export function shortVersion(version: string | undefined): string | undefined {
  return version === undefined ? undefined : version.slice(0, SHORT_VERSION_LENGTH);
}

function errorFields(error: unknown): { error_code?: string; error?: string } {
  if (error === undefined || error === null) return {};
  const code = error instanceof DsoError ? error.code : "INTERNAL";
  const text = error instanceof Error ? error.message : String(error);
  const message = redact(text.split("\n")[0] ?? "").slice(0, MAX_ERROR_LENGTH);
  return { error_code: code, error: message };
}

/** The JSON object of one audit line; field names are snake_case as in docs/audit.md. */
export function auditRecord(event: AuditEvent, now: Date = new Date()): Record<string, unknown> {
  const record: Record<string, unknown> = {
    tag: AUDIT_TAG,
    v: AUDIT_SCHEMA_VERSION,
    time: now.toISOString(),
    event: event.event,
    outcome: event.outcome,
  };
  if (event.container) record.container = { id: event.container.id, ...(event.container.name ? { name: event.container.name } : {}) };
  if (event.secrets) {
    record.secrets = event.secrets.map((s) => ({ name: s.name, ...(s.version === undefined ? {} : { version: shortVersion(s.version) }) }));
  }
  const scalars: [string, unknown][] = [
    ["mode", event.mode],
    ["path", event.path],
    ["strategy", event.strategy],
    ["action", event.action],
    ["trigger", event.trigger],
    ["volume", event.volume],
    ["target", event.target],
    ["mount_id", event.mountId],
    ["caller_uid", event.callerUid],
    ["duration_ms", event.durationMs === undefined ? undefined : Math.round(event.durationMs)],
  ];
  for (const [key, value] of scalars) if (value !== undefined) record[key] = value;
  if (event.options) record.options = [...event.options];
  if (event.request) record.request = { method: event.request.method, path: event.request.path, status: event.request.status };
  Object.assign(record, errorFields(event.error));
  return record;
}

export class AuditLog {
  constructor(
    private readonly sink: AuditSink,
    private readonly onRecord?: (event: AuditEventName) => void,
  ) {}

  record(event: AuditEvent): void {
    // Names come from containers and callers: escaped past what JSON.stringify does (C1, bidi, U+2028).
    this.sink.write(`${escapeJsonLine(redact(JSON.stringify(auditRecord(event))))}\n`);
    this.onRecord?.(event.event);
  }

  close(): void {
    this.sink.close();
  }
}

export function stderrSink(stream: { write(text: string): unknown } = process.stderr): AuditSink {
  return { write: (line) => void stream.write(line), close: () => {} };
}

/**
 * Appends to `path` (created 0600). Refuses a symlink and anything but a regular file, so the
 * agent (root) cannot be pointed at another file. Each line is one write(2) with O_APPEND.
 */
export function fileSink(path: string): AuditSink {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ELOOP" ? "is a symbolic link" : (code ?? "cannot be opened");
    throw new DsoError("CONFIG_INVALID", `agent.audit.output: ${path} ${why}`, { cause: error });
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new DsoError("CONFIG_INVALID", `agent.audit.output: ${path} is not a regular file`);
  }
  return {
    write: (line) => void writeSync(fd, line),
    close: () => closeSync(fd),
  };
}

/** `output` is "stderr" or an absolute path (agent.audit.output). */
export function openAuditLog(output: string, onRecord?: (event: AuditEventName) => void): AuditLog {
  return new AuditLog(output === "stderr" ? stderrSink() : fileSink(output), onRecord);
}
