/** A ReadableStream that yields exactly these chunks, then ends (framing tests and fuzz). */
export function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

/** A provider-protocol frame header announcing these lengths (which may lie). */
export function frameHeader(jsonBytes: number, rawBytes: number): Uint8Array {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setUint32(0, jsonBytes >>> 0);
  new DataView(h.buffer).setUint32(4, rawBytes >>> 0);
  return h;
}
