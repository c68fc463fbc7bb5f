/**
 * Secret values across the provider pipe. The provider host turns each item's value into its keys
 * (in the JSON) and its bytes (in the frame's raw section, back to back); the agent slices the
 * raw section, a buffer it owns, back into per-key views. No value is ever a JS string on the
 * agent side; whoever holds a SecretBytes wipes it when its window ends (wipeSecretBytes).
 */
import { DsoError } from "../errors.ts";
import { secretBuffer, wipeBuffer } from "./framing.ts";
import type { FetchItem, RpcError, SecretRef, WireFetchItem } from "./protocol.ts";

/** key inside the secret → its bytes (views into one buffer the holder owns). */
export type SecretBytes = Map<string, Uint8Array>;

/** A fetch result item as the agent holds it. */
export interface FetchedItem {
  ref: SecretRef;
  fingerprint?: string;
  version?: string;
  value?: SecretBytes;
  error?: RpcError;
}

const encoder = new TextEncoder();

function bytesOf(content: string | Uint8Array, encoding: "utf8" | "base64"): Uint8Array {
  if (typeof content !== "string") return content;
  return encoding === "base64" ? Uint8Array.from(Buffer.from(content, "base64")) : encoder.encode(content);
}

/** Provider side: items for the JSON part, and the raw parts in the order the keys list them. */
export function valuesToWire(items: readonly FetchItem[]): { items: WireFetchItem[]; raw: Uint8Array[] } {
  const raw: Uint8Array[] = [];
  const wire = items.map(({ value, ...rest }): WireFetchItem => {
    if (!value) return rest;
    const keys = Object.entries(value.data).map(([key, content]) => {
      const bytes = bytesOf(content, value.encoding);
      raw.push(bytes);
      return { key, bytes: bytes.length };
    });
    return { ...rest, value: { keys } };
  });
  return { items: wire, raw };
}

/** Agent side: the items with their values as views into `raw`; a length mismatch is a protocol error. */
export function valuesFromWire(items: readonly WireFetchItem[], raw: Uint8Array | undefined, provider: string): FetchedItem[] {
  const total = raw?.length ?? 0;
  let offset = 0;
  const out = items.map(({ value, ...rest }): FetchedItem => {
    if (!value) return rest;
    const bytes: SecretBytes = new Map();
    for (const { key, bytes: length } of value.keys) {
      if (offset + length > total) break;
      bytes.set(key, raw ? raw.subarray(offset, offset + length) : new Uint8Array(0));
      offset += length;
    }
    return { ...rest, value: bytes };
  });
  if (offset !== total || out.some((item, i) => item.value && item.value.size !== items[i]!.value!.keys.length)) {
    wipeBuffer(raw);
    throw new DsoError("RPC_PROTOCOL", `provider ${provider}: fetch result's value keys or lengths do not match its raw section (${total} bytes)`);
  }
  return out;
}

/** Buffers made from a value during its window (rendered templates): wiped with the value. */
const derivedBytes = new WeakMap<SecretBytes, Uint8Array[]>();

/** Ties `bytes` (an owned buffer made from `value`, such as a rendered template) to the value's window. */
export function attachDerivedBytes(value: SecretBytes, bytes: Uint8Array): void {
  const list = derivedBytes.get(value);
  if (list) list.push(bytes);
  else derivedBytes.set(value, [bytes]);
}

/**
 * Fills a value's bytes with zeros: the end of its window. With `whole` (the default), the whole
 * buffer behind it (one fetch's raw section, every value of that fetch) is zeroed and unlocked;
 * without, only this value's own bytes (one item of a fetch whose other values live on).
 */
export function wipeSecretBytes(value: SecretBytes | undefined, options: { whole?: boolean } = {}): void {
  if (!value) return;
  for (const bytes of derivedBytes.get(value) ?? []) wipeBuffer(bytes);
  derivedBytes.delete(value);
  const buffers = new Set<ArrayBufferLike>();
  for (const bytes of value.values()) {
    bytes.fill(0);
    buffers.add(bytes.buffer);
  }
  if (options.whole === false) return;
  for (const buffer of buffers) wipeBuffer(new Uint8Array(buffer));
}

/** A copy the caller owns (the in-memory cache keeps its own, wiped when replaced). */
export function copySecretBytes(value: SecretBytes): SecretBytes {
  const total = [...value.values()].reduce((sum, b) => sum + b.length, 0);
  const buffer = secretBuffer(total);
  const copy: SecretBytes = new Map();
  let offset = 0;
  for (const [key, bytes] of value) {
    buffer.set(bytes, offset);
    copy.set(key, buffer.subarray(offset, offset + bytes.length));
    offset += bytes.length;
  }
  return copy;
}
