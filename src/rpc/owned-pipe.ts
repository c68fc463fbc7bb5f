/**
 * A child's output read with read(2) straight into buffers the agent owns. Bun's own pipe reader
 * fills a runtime buffer first and copies out of it, and that buffer keeps the bytes after we
 * zero our copy: measured, it was where most stray copies of values sat (docs/security.md). The
 * value channel of a fetch process is read this way instead: a non-blocking pipe (src/os/libc.ts
 * openPipe) polled with readSync, backing off while it is empty, for the short life of that
 * process. The consumer zeroes each chunk once consumed (framing.ts).
 */
import { closeSync, readSync } from "node:fs";
import { ownedBytes } from "./framing.ts";

const CHUNK_BYTES = 64 * 1024;
const MAX_IDLE_MS = 16;

export function ownedPipeStream(fd: number): ReadableStream<Uint8Array> {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    closeSync(fd);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (let idle = 1; !closed; idle = Math.min(idle * 2, MAX_IDLE_MS)) {
        const chunk = ownedBytes(CHUNK_BYTES);
        let n: number;
        try {
          n = readSync(fd, chunk, 0, CHUNK_BYTES, null);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EAGAIN") {
            await Bun.sleep(idle);
            continue;
          }
          close();
          controller.error(error);
          return;
        }
        if (n === 0) {
          close();
          controller.close();
          return;
        }
        controller.enqueue(chunk.subarray(0, n));
        return;
      }
    },
    cancel: close,
  });
}
