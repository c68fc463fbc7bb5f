/**
 * Tests speak of values as text; the agent holds them as bytes (SecretBytes). These convert,
 * for assertions and fakes only.
 */
import type { FetchedItem, SecretBytes } from "../../src/rpc/wire-values.ts";

const strict = new TextDecoder("utf-8", { fatal: true });

/** `{ value: "x" }` → SecretBytes (strings as UTF-8, Uint8Arrays as they are). */
export function secretBytes(data: Record<string, string | Uint8Array>): SecretBytes {
  return new Map(Object.entries(data).map(([k, v]) => [k, typeof v === "string" ? new TextEncoder().encode(v) : v]));
}

/** SecretBytes → the provider-side shape: UTF-8 text, or base64 when any key is not UTF-8. */
export function valueData(value: SecretBytes | undefined): { data: Record<string, string>; encoding: "utf8" | "base64" } | undefined {
  if (!value) return undefined;
  try {
    return { data: Object.fromEntries([...value].map(([k, b]) => [k, strict.decode(b)])), encoding: "utf8" };
  } catch {
    return { data: Object.fromEntries([...value].map(([k, b]) => [k, Buffer.from(b).toString("base64")])), encoding: "base64" };
  }
}

export interface TextItem extends Omit<FetchedItem, "value"> {
  value?: { data: Record<string, string>; encoding: "utf8" | "base64" };
}

/** Fetched items (the agent's, or a provider client's own) with their values in the provider-side shape. */
export function legacyItems(items: ReadonlyArray<Omit<FetchedItem, "value"> & { value?: SecretBytes | { data: Record<string, string | Uint8Array>; encoding: "utf8" | "base64" } }>): TextItem[] {
  return items.map(({ value, ...rest }) => {
    if (!value) return rest;
    if (value instanceof Map) return { ...rest, value: valueData(value)! };
    const data = Object.fromEntries(Object.entries(value.data).map(([k, v]) => [k, typeof v === "string" ? v : new TextDecoder().decode(v)]));
    return { ...rest, value: { data, encoding: value.encoding } };
  });
}
