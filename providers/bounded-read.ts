/**
 * Reads with a ceiling, for what a provider takes from outside: an HTTP reply's body, a small
 * file a credentials setting names. Past the limit the stream is cancelled and nothing more is
 * buffered, so a hostile or broken server (or a FIFO, or /dev/zero where a token file should be)
 * cannot make the provider process grow or hang.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

/** The reply's body was longer than the limit (its stream is cancelled). */
export class ReplyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`reply over ${limit} bytes`);
  }
}

/** The body as text, at most `limit` bytes; ReplyTooLarge past it. */
export async function readBoundedText(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw new ReplyTooLarge(limit);
  }
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new ReplyTooLarge(limit);
    }
    chunks.push(value);
  }
  // The bytes may be a token or a secret's payload: only the returned text outlives this call.
  const whole = Buffer.concat(chunks);
  for (const chunk of chunks) chunk.fill(0);
  const text = new TextDecoder().decode(whole);
  whole.fill(0);
  return text;
}

/** Why a small file could not be read: a short phrase for the caller's one-line error. */
export class SmallFileError extends Error {}

/**
 * A regular file of at most `limit` bytes, as text. Opened without blocking (a FIFO does not hang
 * the open), then refused unless it is a regular file; never reads more than `limit` + 1 bytes.
 */
export function readSmallFile(path: string, limit: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    throw new SmallFileError("cannot be read");
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new SmallFileError("is not a regular file");
    if (stat.size > limit) throw new SmallFileError(`is larger than ${limit} bytes`);
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    for (let n = 1; n > 0 && length <= limit; length += n) n = readSync(fd, buffer, length, buffer.length - length, null);
    if (length > limit) throw new SmallFileError(`is larger than ${limit} bytes`);
    const text = buffer.toString("utf8", 0, length);
    buffer.fill(0);
    return text;
  } finally {
    closeSync(fd);
  }
}
