import { describe, expect, test } from "bun:test";
import { frameHeader as header, streamOf } from "../support/byte-stream.ts";
import { readFileSync } from "node:fs";
import { encodeFrame, FRAME_HEADER_BYTES, LINE_PEER, readFrames, secretBuffer, wipeBuffer, type Frame } from "../../src/rpc/framing.ts";

const enc = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Splits bytes into chunks of `size` (copies, so the test keeps what it handed over). */
function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

async function collect(stream: ReadableStream<Uint8Array>, maxJsonBytes = 64, maxRawBytes = 64): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of readFrames(stream, { maxJsonBytes, maxRawBytes })) out.push(f);
  return out;
}

describe("provider protocol framing (length-prefixed JSON + raw section)", () => {
  test("frames split across chunks are joined, several per chunk are split; raw parts come back as bytes", async () => {
    const bytes = concat(encodeFrame({ a: 1 }), encodeFrame({ b: 2 }, [enc.encode("xy"), enc.encode("z")]), encodeFrame({ c: 3 }));
    for (const size of [1, 3, 7, bytes.length]) {
      const frames = await collect(streamOf(...chunks(bytes, size)));
      expect(frames).toEqual([
        { ok: true, value: { a: 1 } },
        { ok: true, value: { b: 2 }, raw: enc.encode("xyz") },
        { ok: true, value: { c: 3 } },
      ]);
    }
  });

  test("the JSON part never holds the raw bytes", () => {
    const frame = encodeFrame({ id: 1 }, [enc.encode("s3cret")]);
    const json = new TextDecoder().decode(frame.subarray(FRAME_HEADER_BYTES, frame.length - 6));
    expect(json).toBe('{"id":1}');
    expect(new TextDecoder().decode(frame.subarray(frame.length - 6))).toBe("s3cret");
  });

  test("every chunk handed to the reader is zeroed once consumed (values do not linger in pipe buffers)", async () => {
    const handed = chunks(encodeFrame({ id: 1 }, [enc.encode("planted-value-in-a-chunk")]), 5);
    // Positive control: before the reader consumes them, the chunks do hold the value.
    expect(new TextDecoder().decode(concat(...handed))).toContain("planted-value-in-a-chunk");
    const frames = await collect(streamOf(...handed));
    expect(frames[0]).toMatchObject({ ok: true, raw: enc.encode("planted-value-in-a-chunk") });
    expect(handed.every((c) => c.every((b) => b === 0))).toBe(true);
  });

  test("an oversize JSON or raw part is reported once and skipped, later frames still arrive", async () => {
    const bigJson = encodeFrame({ big: "x".repeat(200) });
    const bigRaw = encodeFrame({ r: 1 }, [new Uint8Array(100)]);
    const frames = await collect(streamOf(...chunks(concat(bigJson, bigRaw, encodeFrame({ ok: 1 })), 16)));
    expect(frames).toEqual([
      { ok: false, reason: "frame JSON part larger than 64 bytes" },
      { ok: false, reason: "frame raw part larger than 64 bytes" },
      { ok: true, value: { ok: 1 } },
    ]);
  });

  test("garbage, invalid UTF-8 and truncated frames are bad frames, not exceptions", async () => {
    const junk = enc.encode("not json");
    const bad = new Uint8Array([0xff, 0xfe]);
    const frames = await collect(streamOf(header(junk.length, 0), junk, header(2, 0), bad, encodeFrame({ x: 1 }), header(10, 0), enc.encode("{")));
    expect(frames).toEqual([
      { ok: false, reason: "frame is not valid UTF-8 JSON" },
      { ok: false, reason: "frame is not valid UTF-8 JSON" },
      { ok: true, value: { x: 1 } },
      { ok: false, reason: "stream ended inside a frame" },
    ]);
  });

  test("a protocol 1 peer (JSON lines) is recognised, not waited on", async () => {
    const frames = await collect(streamOf(enc.encode('{"type":"hello","protocol":1,"provider":"file"}\n')));
    expect(frames).toEqual([{ ok: false, reason: LINE_PEER }]);
  });
});

describe("buffers for values", () => {
  const lockedKiB = () => Number(/VmLck:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0");
  test("a value buffer is mlocked while it lives, and zeroed and unlocked when wiped", () => {
    const before = lockedKiB();
    const bytes = secretBuffer(64 * 1024);
    bytes.fill(7);
    expect(lockedKiB()).toBeGreaterThanOrEqual(before + 64);
    wipeBuffer(bytes);
    expect(bytes.every((b) => b === 0)).toBe(true);
    expect(lockedKiB()).toBe(before);
  });
});
