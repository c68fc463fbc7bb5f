/**
 * Hostile input (issue 13), the agent ⇄ provider pipe in both directions. Agent side: any byte
 * stream, cut into any chunks, gives frames or bad-frame reports from the frame reader (never an
 * exception, never more bytes buffered than a frame may hold), and any fetch result with any raw
 * section gives values or one RPC_PROTOCOL error, zeroing the raw section when it refuses it.
 * Provider side: the real provider host (providers/host.ts) fed any mix of valid, malformed,
 * truncated, oversized and interleaved frames answers every one with a frame the agent can read,
 * and keeps serving. Seeded and bounded like the other targets.
 */
import { describe, expect, test } from "bun:test";
import { frameHeader as header, streamOf } from "../support/byte-stream.ts";
import fc from "fast-check";
import { serveProvider } from "../../providers/host.ts";
import type { ProviderFactory } from "../../providers/types.ts";
import { DsoError } from "../../src/errors.ts";
import { encodeFrame, FRAME_HEADER_BYTES, LINE_PEER, readFrames, type Frame } from "../../src/rpc/framing.ts";
import { FRAME_LIMITS, PROTOCOL_VERSION, type WireFetchItem } from "../../src/rpc/protocol.ts";
import { valuesFromWire } from "../../src/rpc/wire-values.ts";
import { crash, expectClean, fuzzRuns, OK, runFuzz, violation, type Verdict } from "../support/fuzz.ts";

const SMALL = { maxJsonBytes: 256, maxRawBytes: 256 };


const json = fc.jsonValue({ maxDepth: 3 });

/** One piece of a stream: a good frame, a frame with lying lengths, garbage, or a protocol 1 line. */
const piece = fc.oneof(
  fc.tuple(json, fc.uint8Array({ maxLength: 40 })).map(([value, raw]) => encodeFrame(value, raw.length ? [raw] : [])),
  fc.tuple(fc.nat({ max: 2 ** 32 - 1 }), fc.nat({ max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 60 })).map(([j, r, body]) => new Uint8Array([...header(j, r), ...body])),
  fc.tuple(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 600 })).map(([j, r]) => new Uint8Array([...header(j, r), ...new Uint8Array(j + r).fill(0x41)])),
  fc.uint8Array({ maxLength: 30 }),
  fc.constant(new TextEncoder().encode('{"type":"hello","protocol":1}\n')),
);

/** A stream of pieces cut into chunks at arbitrary points. */
const chunkedStream = fc.tuple(fc.array(piece, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 })).map(([pieces, cuts]) => {
  const all = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    all.set(p, at);
    at += p.length;
  }
  const chunks: Uint8Array[] = [];
  for (let i = 0, k = 0; i < all.length; k++) {
    const size = cuts[k % cuts.length]!;
    chunks.push(all.slice(i, i + size));
    i += size;
  }
  return chunks;
});

async function frameReaderCase(chunks: Uint8Array[]): Promise<Verdict> {
  try {
    const frames: Frame[] = [];
    for await (const f of readFrames(streamOf(...chunks), SMALL)) frames.push(f);
    for (const f of frames) {
      if (f.ok && f.raw && f.raw.length > SMALL.maxRawBytes) return violation(`a raw part of ${f.raw.length} bytes passed a cap of ${SMALL.maxRawBytes}`);
      if (!f.ok && (typeof f.reason !== "string" || f.reason.includes("\n"))) return violation(`a bad frame's reason is not one line: ${JSON.stringify(f.reason)}`);
    }
    // Every chunk the reader took is zeroed; after a protocol 1 line it stops reading (the agent
    // then kills that provider), so later chunks were never taken.
    const stoppedEarly = frames.some((f) => !f.ok && f.reason === LINE_PEER);
    if (!stoppedEarly && chunks.some((c) => c.some((b) => b !== 0))) return violation("a chunk handed to the reader was not zeroed");
    return OK;
  } catch (error) {
    return crash(error);
  }
}

const wireItem: fc.Arbitrary<WireFetchItem> = fc.record(
  {
    ref: fc.record({ name: fc.string({ minLength: 1, maxLength: 8 }) }),
    fingerprint: fc.string({ minLength: 1, maxLength: 8 }),
    value: fc.record({ keys: fc.array(fc.record({ key: fc.constantFrom("value", "user", "password", ""), bytes: fc.integer({ min: 0, max: 40 }) }), { maxLength: 4 }) }),
  },
  { requiredKeys: ["ref"] },
);

async function wireValuesCase([items, raw]: [WireFetchItem[], Uint8Array | null]): Promise<Verdict> {
  const section = raw ?? undefined;
  try {
    const out = valuesFromWire(items, section, "fuzz");
    const total = out.reduce((n, item) => n + [...(item.value?.values() ?? [])].reduce((m, b) => m + b.length, 0), 0);
    if (total !== (section?.length ?? 0)) return violation(`values of ${total} bytes accepted from a raw section of ${section?.length ?? 0}`);
    return OK;
  } catch (error) {
    if (!(error instanceof DsoError) || error.code !== "RPC_PROTOCOL") return crash(error);
    if (section?.some((b) => b !== 0)) return violation("a refused raw section was not zeroed");
    return OK;
  }
}

/** A provider whose client answers instantly: the host is what is fuzzed. */
const factory: ProviderFactory = {
  type: "file",
  async create() {
    return {
      fingerprint: async (refs) => refs.map((ref) => ({ ref, fingerprint: "f" })),
      fetch: async (refs) => refs.map((ref) => ({ ref, fingerprint: "f", value: { data: { value: `v-${ref.name}` }, encoding: "utf8" as const } })),
      health: async () => ({ ok: true }),
      close: async () => {},
    };
  },
};

const method = fc.constantFrom("configure", "fingerprint", "fetch", "health", "shutdown", "nope", "", "__proto__");
const request = fc.oneof(
  { weight: 3, arbitrary: fc.record({ id: fc.integer({ min: -2, max: 50 }), method, params: fc.oneof(json, fc.constant({ refs: [{ name: "a" }, { name: "b" }] }), fc.constant({ name: "p", type: "file", config: {} })) }) },
  json,
);
/** A piece of the host's input, and whether it is a whole frame (bytes after it stay in step). */
const hostPiece = fc.oneof(
  { weight: 4, arbitrary: request.map((r) => ({ bytes: encodeFrame(r), whole: true, shutdown: (r as { method?: unknown } | null)?.method === "shutdown" })) },
  { weight: 1, arbitrary: request.map((r) => ({ bytes: encodeFrame(r, [new Uint8Array([1, 2, 3])]), whole: true, shutdown: false })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((bytes) => ({ bytes, whole: false, shutdown: false })) },
  { weight: 1, arbitrary: fc.nat({ max: 2 ** 32 - 1 }).map((n) => ({ bytes: header(n, 0), whole: false, shutdown: false })) },
);
const hostInput = fc.array(hostPiece, { maxLength: 10 });

/**
 * The host answers every whole frame and keeps serving: a health call after them is answered.
 * Bytes that break the framing itself (a lying length) may swallow what follows — no framed
 * protocol can resync — but must never crash the host: it ends cleanly when its input does.
 */
async function hostCase(pieces: Array<{ bytes: Uint8Array; whole: boolean; shutdown: boolean }>): Promise<Verdict> {
  const frames = pieces.map((p) => p.bytes.slice());
  const inStep = pieces.every((p) => p.whole);
  const stopped = pieces.some((p) => p.shutdown);
  const written: Uint8Array[] = [];
  const configure = encodeFrame({ id: 1000, method: "configure", params: { name: "p", type: "file", config: {} } });
  const health = encodeFrame({ id: 1001, method: "health" });
  try {
    const exit = await serveProvider(factory, {
      // Configure first, the hostile frames, then a health call that must still be answered.
      input: streamOf(configure, ...frames, health),
      write: (bytes) => void written.push(bytes.slice()),
      logLine: () => {},
      env: {},
    });
    if (exit !== 0) return violation(`the host exited ${exit}`);
    const replies: Frame[] = [];
    for await (const f of readFrames(streamOf(...written), FRAME_LIMITS)) replies.push(f);
    const bad = replies.find((f) => !f.ok);
    if (bad) return violation(`the host wrote a frame the agent cannot read: ${JSON.stringify(bad)}`);
    const hello = replies[0] as { ok: true; value: { type?: string; protocol?: number } } | undefined;
    if (hello?.value.type !== "hello" || hello.value.protocol !== PROTOCOL_VERSION) return violation("no hello first");
    const answered = replies.some((f) => f.ok && (f.value as { id?: unknown }).id === 1001);
    if (inStep && !stopped && !answered) return violation("a health call after the hostile frames got no answer");
    return OK;
  } catch (error) {
    return crash(error);
  }
}

describe("hostile input: the provider pipe", () => {
  test("any byte stream, cut anywhere, gives frames or one-line bad-frame reports; every chunk is zeroed", async () => {
    expectClean(await runFuzz({ target: "rpc frames (agent reads)", arbitrary: chunkedStream, check: frameReaderCase, runs: fuzzRuns(400), caseTimeoutMs: 2_000 }));
  }, 60_000);

  test("any fetch result with any raw section gives values that add up, or RPC_PROTOCOL with the section zeroed", async () => {
    const arbitrary = fc.tuple(fc.array(wireItem, { maxLength: 4 }), fc.option(fc.uint8Array({ maxLength: 80 }), { nil: null }));
    expectClean(await runFuzz({ target: "rpc fetch values", arbitrary, check: wireValuesCase, runs: fuzzRuns(1000), caseTimeoutMs: 1_000 }));
  }, 60_000);

  test("the provider host answers any mix of valid, malformed, raw-carrying and truncated requests, and keeps serving", async () => {
    expectClean(await runFuzz({ target: "rpc frames (provider reads)", arbitrary: hostInput, check: hostCase, runs: fuzzRuns(200), caseTimeoutMs: 3_000 }));
  }, 60_000);
});

test("regression (found by this fuzz): an empty key with no raw section is an empty value, not a TypeError", () => {
  const [item] = valuesFromWire([{ ref: { name: "s" }, fingerprint: "f", value: { keys: [{ key: "value", bytes: 0 }] } }], undefined, "fuzz");
  expect(item?.value?.get("value")).toEqual(new Uint8Array(0));
  expect(() => valuesFromWire([{ ref: { name: "s" }, value: { keys: [{ key: "value", bytes: 3 }] } }], undefined, "fuzz")).toThrow("do not match its raw section");
});
