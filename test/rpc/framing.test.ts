import { describe, expect, test } from "bun:test";
import { encodeFrame, readFrames, type Frame } from "../../src/rpc/framing.ts";

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === "string" ? enc.encode(c) : c);
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>, max = 64): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of readFrames(stream, max)) out.push(f);
  return out;
}

describe("NDJSON framing", () => {
  test("frames split across chunks are joined, several per chunk are split", async () => {
    const frames = await collect(streamOf('{"a":', '1}\n{"b":2}\n{"c"', ":3}\n"));
    expect(frames).toEqual([
      { ok: true, value: { a: 1 } },
      { ok: true, value: { b: 2 } },
      { ok: true, value: { c: 3 } },
    ]);
  });

  test("an oversize frame is reported once and skipped, later frames still arrive", async () => {
    const big = "x".repeat(200);
    const frames = await collect(streamOf(`{"big":"${big.slice(0, 50)}`, `${big.slice(50)}"}\n`, '{"ok":1}\n'));
    expect(frames).toHaveLength(2);
    expect(frames[0]).toEqual({ ok: false, reason: "frame larger than 64 bytes" });
    expect(frames[1]).toEqual({ ok: true, value: { ok: 1 } });
  });

  test("garbage and invalid UTF-8 are bad frames, not exceptions", async () => {
    const frames = await collect(streamOf("not json\n", new Uint8Array([0xff, 0xfe, 0x0a]), '{"x":1}\n'));
    expect(frames.map((f) => f.ok)).toEqual([false, false, true]);
  });

  test("encodeFrame writes one line", () => {
    expect(new TextDecoder().decode(encodeFrame({ id: 1 }))).toBe('{"id":1}\n');
  });
});
