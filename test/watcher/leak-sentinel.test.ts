import { describe, expect, test } from "bun:test";
import { Demuxer, LineSplitter, MAX_LINE_BYTES } from "../../src/watcher/leak-sentinel.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function frame(stream: number, text: string): Uint8Array {
  const payload = enc.encode(text);
  const out = new Uint8Array(8 + payload.length);
  out[0] = stream;
  new DataView(out.buffer).setUint32(4, payload.length);
  out.set(payload, 8);
  return out;
}

describe("leak sentinel: reading a container's output", () => {
  test("lines split across chunks and frames are joined; every chunk is zeroed once read", () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(dec.decode(line)));
    const demux = new Demuxer((payload) => splitter.push(payload));
    const bytes = new Uint8Array([...frame(1, "first li"), ...frame(2, "ne\nsecond\n"), ...frame(1, "third")]);
    const chunks = [bytes.slice(0, 3), bytes.slice(3, 13), bytes.slice(13)];
    for (const chunk of chunks) demux.push(chunk);
    splitter.flush();
    expect(lines).toEqual(["first line", "second", "third"]);
  });

  test("a line longer than the cap is scanned in pieces, never buffered past it", () => {
    const sizes: number[] = [];
    const splitter = new LineSplitter((line) => sizes.push(line.length));
    const long = new Uint8Array(MAX_LINE_BYTES * 2 + 10).fill(0x61);
    splitter.push(long);
    splitter.flush();
    expect(sizes).toEqual([MAX_LINE_BYTES, MAX_LINE_BYTES, 10]);
    expect(long.every((b) => b === 0)).toBe(true);
  });
});
