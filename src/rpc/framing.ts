/**
 * NDJSON framing with a size cap. A line over the cap is skipped whole (never buffered past the
 * cap) and reported as a bad frame, so a peer that floods the pipe cannot exhaust memory.
 */
export type Frame = { ok: true; value: unknown } | { ok: false; reason: string };

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

export async function* readFrames(stream: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<Frame> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for await (const line of readLineBytes(stream, maxBytes)) {
    if (!(line instanceof Uint8Array)) {
      yield { ok: false, reason: `frame larger than ${maxBytes} bytes` };
      continue;
    }
    try {
      yield { ok: true, value: JSON.parse(decoder.decode(line)) };
    } catch {
      yield { ok: false, reason: "frame is not valid UTF-8 JSON" };
    }
  }
}

/** Text lines (invalid UTF-8 replaced), for a log stream that may carry non-JSON output. */
export async function* readTextLines(stream: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8");
  for await (const line of readLineBytes(stream, maxBytes)) {
    yield line instanceof Uint8Array ? decoder.decode(line) : `(a line longer than ${maxBytes} bytes was dropped)`;
  }
}

const encoder = new TextEncoder();

export function encodeFrame(message: unknown): Uint8Array {
  return encoder.encode(`${JSON.stringify(message)}\n`);
}
