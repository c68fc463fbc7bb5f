/**
 * A provider child's stderr, re-logged by the agent (hashicorp/go-plugin's stdio relay): JSON log
 * lines at their level, anything else (a crash stack trace, a library's stray print) as a
 * warning, all through the agent's logger and so its redactor. A flooding child can neither
 * flood the agent's log nor starve its event loop: lines over the per-second budget are counted.
 */
import type { FieldLogger } from "../log/logger.ts";
import { isMapping } from "../util/is-mapping.ts";
import { readTextLines } from "./framing.ts";

/** A provider's stderr line longer than this is dropped; a non-JSON one is cut to the second. */
const STDERR_LINE_BYTES = 64 * 1024;
const STDERR_TEXT_CHARS = 2_000;
/** At most this many of a provider's stderr lines are re-logged per second; the rest are counted. */
export const STDERR_LINES_PER_SECOND = 100;

export async function relayStderr(stderr: ReadableStream<Uint8Array>, log: FieldLogger): Promise<void> {
  let windowStart = 0;
  let inWindow = 0;
  let dropped = 0;
  const reportDropped = () => {
    if (dropped) log.warn("provider wrote too much to stderr; lines dropped", { dropped, limitPerSecond: STDERR_LINES_PER_SECOND });
    dropped = 0;
  };
  for await (const line of readTextLines(stderr, STDERR_LINE_BYTES)) {
    if (!line.trim()) continue;
    const now = Date.now();
    if (now - windowStart >= 1000) {
      reportDropped();
      windowStart = now;
      inWindow = 0;
    }
    if (++inWindow > STDERR_LINES_PER_SECOND) {
      dropped++;
      continue;
    }
    relogLine(line, log);
  }
  reportDropped();
}

function relogLine(line: string, log: FieldLogger): void {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    entry = undefined;
  }
  if (!isMapping(entry)) return log.warn("provider wrote to stderr", { line: line.slice(0, STDERR_TEXT_CHARS) });
  const { level, msg, time: _time, ...fields } = entry as { level?: string; msg?: string } & Record<string, unknown>;
  const method = level === "error" ? "error" : level === "warn" ? "warn" : level === "debug" ? "debug" : "info";
  log[method](String(msg ?? ""), fields);
}
