/**
 * Framing of the provider protocol. A frame is an 8-byte header — the length of its JSON part and
 * of its raw part, each a big-endian u32 — then the JSON text (UTF-8, never a value), then the raw
 * bytes (the values of a fetch result). A frame over either cap is skipped whole (never buffered)
 * and reported, so a peer that floods the pipe cannot exhaust memory. Every chunk read from the
 * pipe is zeroed as it is consumed; the raw part is copied once, into a buffer the caller owns
 * and must wipe. Text lines (a provider's stderr log) are read by readTextLines.
 */
import { lockMemory, unlockMemory } from "../os/libc.ts";
/**
 * A zeroed byte array for secret material whose storage never moves: backed by its own
 * ArrayBuffer, so views (subarray, Buffer.from(buffer)) share it instead of JSC copying a small
 * array out of its GC storage and leaving the original bytes behind.
 */
export function ownedBytes(length: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(length));
}

/**
 * ownedBytes for secret values: also mlock(2)ed where the platform and RLIMIT_MEMLOCK allow, so
 * the kernel never swaps the pages out. Always end one with wipeBuffer (zeroes and unlocks).
 */
export function secretBuffer(length: number): Uint8Array {
  const bytes = ownedBytes(length);
  lockMemory(bytes);
  return bytes;
}

/** The end of a secretBuffer's life: zeroed, and its pages unlocked. */
export function wipeBuffer(bytes: Uint8Array | undefined): void {
  if (!bytes) return;
  const whole = new Uint8Array(bytes.buffer);
  whole.fill(0);
  unlockMemory(whole);
}

export type Frame = { ok: true; value: unknown; raw?: Uint8Array } | { ok: false; reason: string };

export const FRAME_HEADER_BYTES = 8;
/** The reason given when the peer writes JSON lines (protocol 1) instead of frames. */
export const LINE_PEER = "the peer writes JSON lines, not frames (protocol 1)";

export interface FrameLimits {
  maxJsonBytes: number;
  maxRawBytes: number;
}

const NEWLINE = 0x0a;

/** Lines of a byte stream, each at most `maxBytes` (longer ones are reported, not kept). */
async function* readLineBytes(stream: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array | { oversize: true }> {
  let chunks: Uint8Array[] = [];
  let size = 0;
  let skipping = false;

  function takeLine(): Uint8Array {
    const line = new Uint8Array(size);
    let offset = 0;
    for (const c of chunks) {
      line.set(c, offset);
      offset += c.length;
    }
    chunks = [];
    size = 0;
    return line;
  }

  for await (const chunk of stream) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (!skipping) {
        if (size + piece.length > maxBytes) {
          skipping = true;
          chunks = [];
          size = 0;
          yield { oversize: true };
        } else if (piece.length > 0) {
          chunks.push(piece.slice());
          size += piece.length;
        }
      }
      if (nl === -1) break;
      if (skipping) skipping = false;
      else if (size > 0) yield takeLine();
      start = nl + 1;
    }
  }
  if (!skipping && size > 0) yield takeLine();
}

/** Text lines (invalid UTF-8 replaced), for a log stream that may carry non-JSON output. */
export async function* readTextLines(stream: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8");
  for await (const line of readLineBytes(stream, maxBytes)) {
    yield line instanceof Uint8Array ? decoder.decode(line) : `(a line longer than ${maxBytes} bytes was dropped)`;
  }
}

/** Bytes of a stream, taken exactly, every consumed source byte zeroed. */
class ByteReader {
  private chunks: Uint8Array[] = [];
  private head = 0;
  private available = 0;
  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  /** Pull until `n` bytes are buffered; false when the stream ended first. */
  async fill(n: number): Promise<boolean> {
    while (this.available < n) {
      const next = await this.source.next();
      if (next.done) return false;
      if (next.value.length === 0) continue;
      this.chunks.push(next.value);
      this.available += next.value.length;
    }
    return true;
  }

  /** Consume `n` buffered bytes into `into` (when given), zeroing them in the source chunks. */
  consume(n: number, into?: Uint8Array): void {
    let offset = 0;
    while (offset < n) {
      const chunk = this.chunks[0]!;
      const take = Math.min(n - offset, chunk.length - this.head);
      const part = chunk.subarray(this.head, this.head + take);
      into?.set(part, offset);
      part.fill(0);
      offset += take;
      this.head += take;
      this.available -= take;
      if (this.head === chunk.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
  }

  /** Discard `n` bytes without buffering more than one chunk at a time; false at end of stream. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.available === 0 && !(await this.fill(1))) return false;
      const take = Math.min(left, this.available);
      this.consume(take);
      left -= take;
    }
    return true;
  }

  header(): [number, number] {
    const bytes = new Uint8Array(FRAME_HEADER_BYTES);
    this.consume(FRAME_HEADER_BYTES, bytes);
    const view = new DataView(bytes.buffer);
    return [view.getUint32(0), view.getUint32(4)];
  }

  /** Zero whatever is still buffered (the stream ended or the reader is abandoned). */
  wipe(): void {
    for (const chunk of this.chunks) chunk.fill(0);
    this.chunks = [];
    this.available = 0;
    this.head = 0;
  }
}

export async function* readFrames(stream: ReadableStream<Uint8Array>, limits: FrameLimits): AsyncGenerator<Frame> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const reader = new ByteReader(stream[Symbol.asyncIterator]());
  try {
    for (;;) {
      if (!(await reader.fill(1))) return;
      if (!(await reader.fill(FRAME_HEADER_BYTES))) {
        yield { ok: false, reason: "stream ended inside a frame header" };
        return;
      }
      const [jsonBytes, rawBytes] = reader.header();
      if (jsonBytes >>> 24 === 0x7b) {
        // "{" where a length belongs: a peer writing JSON lines, protocol 1.
        yield { ok: false, reason: LINE_PEER };
        return;
      }
      if (jsonBytes > limits.maxJsonBytes || rawBytes > limits.maxRawBytes) {
        const what = jsonBytes > limits.maxJsonBytes ? `JSON part larger than ${limits.maxJsonBytes} bytes` : `raw part larger than ${limits.maxRawBytes} bytes`;
        if (!(await reader.skip(jsonBytes + rawBytes))) {
          yield { ok: false, reason: `${what}, and the stream ended inside it` };
          return;
        }
        yield { ok: false, reason: `frame ${what}` };
        continue;
      }
      if (!(await reader.fill(jsonBytes + rawBytes))) {
        yield { ok: false, reason: "stream ended inside a frame" };
        return;
      }
      const json = new Uint8Array(jsonBytes);
      reader.consume(jsonBytes, json);
      // An ArrayBuffer from the start: JSC keeps a small typed array's bytes in GC storage and
      // copies them out (leaving the old ones behind, unzeroed) the first time a view of its
      // buffer is taken (subarray). See ownedBytes.
      const raw = rawBytes > 0 ? secretBuffer(rawBytes) : undefined;
      if (raw) reader.consume(rawBytes, raw);
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(json));
      } catch {
        wipeBuffer(raw);
        yield { ok: false, reason: "frame is not valid UTF-8 JSON" };
        continue;
      }
      yield raw ? { ok: true, value, raw } : { ok: true, value };
    }
  } finally {
    reader.wipe();
  }
}

const encoder = new TextEncoder();

/** One frame: `message` as JSON (it must hold no value) and `raw` (values) after it. */
export function encodeFrame(message: unknown, raw: readonly Uint8Array[] = []): Uint8Array {
  const json = encoder.encode(JSON.stringify(message));
  const rawBytes = raw.reduce((sum, part) => sum + part.length, 0);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + json.length + rawBytes);
  const view = new DataView(frame.buffer);
  view.setUint32(0, json.length);
  view.setUint32(4, rawBytes);
  frame.set(json, FRAME_HEADER_BYTES);
  let offset = FRAME_HEADER_BYTES + json.length;
  for (const part of raw) {
    frame.set(part, offset);
    offset += part.length;
  }
  return frame;
}
