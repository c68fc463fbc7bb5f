/**
 * Waiting for stdout and stderr to drain before process.exit. process.exit drops what the runtime
 * still queues for a pipe: `dso status --json | jq` got the first 64 KiB (the pipe's buffer) when
 * jq read slower than we wrote. Bun's stream reports neither a backlog (writableLength stays 0)
 * nor honours a write callback for it, but a write that queued returns false and "drain" follows
 * once the queue is empty: so each write's answer is tracked.
 */

interface Tracked {
  backlogged: boolean;
}

const tracked = new Map<NodeJS.WriteStream, Tracked>();

/** Starts tracking `stream`'s writes (call once, before anything is written). */
export function trackBacklog(stream: NodeJS.WriteStream): void {
  if (tracked.has(stream)) return;
  const state: Tracked = { backlogged: false };
  tracked.set(stream, state);
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((...args: unknown[]) => {
    const accepted = write(...args);
    if (!accepted) state.backlogged = true;
    return accepted;
  }) as NodeJS.WriteStream["write"];
  stream.on("drain", () => void (state.backlogged = false));
  // A reader that went away (EPIPE) has nothing left to wait for.
  stream.on("error", () => void (state.backlogged = false));
}

/** Resolves once nothing written to a tracked stream is still queued. */
export function drained(stream: NodeJS.WriteStream): Promise<void> {
  const state = tracked.get(stream);
  if (!state?.backlogged) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      state.backlogged = false;
      resolve();
    };
    stream.once("drain", done);
    stream.once("error", done);
  });
}
