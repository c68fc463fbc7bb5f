/**
 * Output built in two passes: a list of segments (plain bytes, or bytes through an encoder) is
 * sized first, then written into one buffer of exactly that size. Buffers for secret material are
 * owned, mlocked where possible, and zeroed by whoever owns them (wipeOwned).
 */
import { lockMemory, unlockMemory } from "../os/libc.ts";
import type { Encoder } from "./bytes.ts";

export type Segment = Uint8Array | { encoder: Encoder; input: Uint8Array } | { write: (out: Uint8Array, at: number) => number; size: number };

/** An output larger than this is refused (a template is for config files, not bulk data). */
export const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

export function segmentSize(segment: Segment): number {
  if (segment instanceof Uint8Array) return segment.length;
  if ("encoder" in segment) return segment.encoder.size(segment.input);
  return segment.size;
}

/** A zeroed buffer of its own ArrayBuffer (views share it; no copy left behind), locked in RAM where allowed. */
export function ownedSecretBuffer(length: number): Uint8Array {
  const bytes = new Uint8Array(new ArrayBuffer(length));
  lockMemory(bytes);
  return bytes;
}

export function wipeOwned(bytes: Uint8Array | undefined): void {
  if (!bytes) return;
  const whole = new Uint8Array(bytes.buffer);
  whole.fill(0);
  unlockMemory(whole);
}

/** The segments written into one owned buffer of exactly their size; undefined when over `limit`. */
export function writeSegments(segments: readonly Segment[], limit = MAX_OUTPUT_BYTES): Uint8Array | undefined {
  let total = 0;
  for (const s of segments) {
    total += segmentSize(s);
    if (total > limit) return undefined;
  }
  const out = ownedSecretBuffer(total);
  let at = 0;
  for (const s of segments) {
    if (s instanceof Uint8Array) {
      out.set(s, at);
      at += s.length;
    } else if ("encoder" in s) at = s.encoder.write(s.input, out, at);
    else at = s.write(out, at);
  }
  if (at !== total) {
    wipeOwned(out);
    throw new Error(`template output size mismatch (${at} of ${total} bytes): a bug in an encoder`);
  }
  return out;
}
