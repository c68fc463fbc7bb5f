/**
 * A one-line "still working" indicator for commands that wait on the agent for a long time
 * (`dso sync` over many containers, `dso rotate` of a secret many containers use). Drawn on
 * stderr only when stderr is a terminal, erased when the work ends; piped or redirected output
 * gets nothing, so scripts and logs see only the result.
 */
import type { OutputStream } from "./terminal.ts";

const FRAMES = ["|", "/", "-", "\\"];
const FRAME_INTERVAL_MS = 120;
/** Quick answers should not flicker a spinner. */
const SHOW_AFTER_MS = 300;

export interface ProgressStream extends OutputStream {
  write(text: string): unknown;
}

export async function withProgress<T>(label: string, work: Promise<T>, stream: ProgressStream = process.stderr): Promise<T> {
  if (!stream.isTTY) return work;
  const started = Date.now();
  let frame = 0;
  let drawn = false;
  const timer = setInterval(() => {
    const elapsed = Date.now() - started;
    if (elapsed < SHOW_AFTER_MS) return;
    drawn = true;
    stream.write(`\r${FRAMES[frame++ % FRAMES.length]} ${label} (${Math.floor(elapsed / 1000)}s)\x1b[K`);
  }, FRAME_INTERVAL_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    if (drawn) stream.write("\r\x1b[K");
  }
}
