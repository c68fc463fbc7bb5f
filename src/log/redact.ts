/**
 * Last line of defence: every value DSO handles is registered here, and every log line is scrubbed
 * of registered values before it is written. Code must still never log a value; this catches the
 * mistake that slips through (an SDK error echoing a body, a stack trace).
 *
 * The redactor keeps no value, nor anything a guess could be checked against: per value only its
 * length and two rolling hashes under bases drawn at random for this process (a keyed
 * Rabin-Karp). A log line is scanned with a sliding window per registered length; a window whose
 * hashes match is replaced. Entries expire (REDACT_TTL_MS) and are capped (MAX_ENTRIES), oldest
 * first, so a long-running agent does not grow without bound. A value registered for an owner
 * (a secret at its provider) does not expire while it is that owner's current value, and is
 * forgotten the moment the owner registers its next one: a rotated-out value is let go at once.
 * The same matching finds values in other text without changing it (findSecretValues: the leak
 * sentinel's view of container output).
 */
import { randomInt } from "node:crypto";

const MIN_REDACTABLE_LENGTH = 4;
const REDACTED = "[REDACTED]";
/** A value rotated out an hour ago cannot reappear in our own logs: let it go. */
export const REDACT_TTL_MS = 60 * 60_000;
export const MAX_ENTRIES = 20_000;
/** Two primes below 2^26, so every product stays an exact integer in a double. */
const MOD_A = 67_108_859;
const MOD_B = 67_108_837;
const BASE_A = 256 + randomInt(MOD_A - 512);
const BASE_B = 256 + randomInt(MOD_B - 512);

interface Entry {
  length: number;
  key: string;
  expires: number;
  /** Who registered it as their current value (never expires while current). */
  owner?: string;
}

/** "<length>:<hashA>:<hashB>" → expiry; insertion order is age order. */
const entries = new Map<string, Entry>();
/** How many live entries have each length (the window sizes to scan). */
const lengths = new Map<number, number>();
/** owner → the keys of its current value's forms. */
const owned = new Map<string, string[]>();

function hashOf(text: string): [number, number] {
  let a = 0;
  let b = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = (a * BASE_A + c) % MOD_A;
    b = (b * BASE_B + c) % MOD_B;
  }
  return [a, b];
}

const keyOf = (length: number, [a, b]: [number, number]) => `${length}:${a}:${b}`;

function add(text: string, now: number): void {
  if (text.length < MIN_REDACTABLE_LENGTH) return;
  const key = keyOf(text.length, hashOf(text));
  const old = entries.get(key);
  if (old) entries.delete(key);
  else lengths.set(text.length, (lengths.get(text.length) ?? 0) + 1);
  entries.set(key, { length: text.length, key, expires: now + REDACT_TTL_MS });
}

function drop(entry: Entry): void {
  if (!entries.has(entry.key)) return;
  entries.delete(entry.key);
  const left = (lengths.get(entry.length) ?? 1) - 1;
  if (left > 0) lengths.set(entry.length, left);
  else lengths.delete(entry.length);
}

function expire(now: number): void {
  for (const entry of entries.values()) {
    if (entries.size <= MAX_ENTRIES && (entry.expires > now || entry.owner !== undefined)) {
      if (entry.owner === undefined) break;
      continue;
    }
    drop(entry);
  }
}

/** JSON log lines carry a value escaped (newlines, quotes, backslashes): that form is registered too. */
function forms(value: string): string[] {
  const escaped = JSON.stringify(value).slice(1, -1);
  return escaped === value ? [value] : [value, escaped];
}

/**
 * The UTF-16 code units of `bytes` decoded as UTF-8 (as TextDecoder would, an invalid byte giving
 * U+FFFD), or of their JSON-escaped form, passed one at a time: no string of the value is made.
 */
function forEachUnit(bytes: Uint8Array, escaped: boolean, emit: (unit: number) => void): void {
  const put = (unit: number) => {
    if (!escaped) return emit(unit);
    const short = unit === 0x22 ? 0x22 : unit === 0x5c ? 0x5c : unit === 0x0a ? 0x6e : unit === 0x0d ? 0x72 : unit === 0x09 ? 0x74 : unit === 0x08 ? 0x62 : unit === 0x0c ? 0x66 : 0;
    if (short) {
      emit(0x5c);
      emit(short);
    } else if (unit < 0x20) {
      emit(0x5c);
      emit(0x75);
      for (const shift of [12, 8, 4, 0]) emit("0123456789abcdef".charCodeAt((unit >> shift) & 0xf));
    } else emit(unit);
  };
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    let cp = need === 0 ? b : need === 1 ? b & 0x1f : need === 2 ? b & 0x0f : b & 0x07;
    let ok = need >= 0 && i + need < bytes.length + (need === 0 ? 1 : 0);
    for (let k = 1; ok && k <= need; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    if (ok && need >= 2 && (cp < (need === 2 ? 0x800 : 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (!ok) {
      put(0xfffd);
      i++;
      continue;
    }
    if (cp >= 0x10000) {
      put(0xd800 + ((cp - 0x10000) >> 10));
      put(0xdc00 + ((cp - 0x10000) & 0x3ff));
    } else put(cp);
    i += need + 1;
  }
}

function keyOfBytes(bytes: Uint8Array, escaped: boolean): [string, number] {
  let a = 0;
  let b = 0;
  let length = 0;
  forEachUnit(bytes, escaped, (c) => {
    a = (a * BASE_A + c) % MOD_A;
    b = (b * BASE_B + c) % MOD_B;
    length++;
  });
  return [keyOf(length, [a, b]), length];
}

/**
 * Registers a value held as bytes (the agent's values), in its plain and JSON-escaped forms. With
 * an `owner`, it replaces that owner's previous value (which is forgotten) and stays until the
 * next one.
 */
export function registerSecretBytes(bytes: Uint8Array, options: { owner?: string; now?: number } = {}): void {
  const now = options.now ?? Date.now();
  const keys: string[] = [];
  for (const escaped of [false, true]) {
    const [key, length] = keyOfBytes(bytes, escaped);
    if (length < MIN_REDACTABLE_LENGTH) continue;
    const old = entries.get(key);
    if (old) entries.delete(key);
    else lengths.set(length, (lengths.get(length) ?? 0) + 1);
    entries.set(key, { length, key, expires: now + REDACT_TTL_MS, ...(options.owner === undefined ? {} : { owner: options.owner }) });
    keys.push(key);
  }
  if (options.owner !== undefined) {
    for (const key of owned.get(options.owner) ?? []) {
      const entry = entries.get(key);
      if (entry && !keys.includes(key)) drop(entry);
    }
    owned.set(options.owner, keys);
  }
  expire(now);
}

/** An owner (a secret) is gone: its current value is let go. */
export function forgetOwner(owner: string): void {
  for (const key of owned.get(owner) ?? []) {
    const entry = entries.get(key);
    if (entry) drop(entry);
  }
  owned.delete(owner);
}

export function registerSecretValue(value: string, now = Date.now()): void {
  for (const form of forms(value)) add(form, now);
  expire(now);
}

export function forgetSecretValue(value: string): void {
  for (const form of forms(value)) {
    const entry = entries.get(keyOf(form.length, hashOf(form)));
    if (entry) drop(entry);
  }
}

/** How many entries the redactor holds (hashes, never values). */
export function redactorSize(): number {
  return entries.size;
}

/** Text as code units: a string, or UTF-16 units in an array the caller owns. */
type Units = string | Uint16Array;

const unitAt = (text: Units, i: number) => (typeof text === "string" ? text.charCodeAt(i) : text[i]!);

/** [start, end) of every window of `text` whose hashes match a live entry, with that entry. */
function matches(text: Units): Array<[number, number, Entry]> {
  const hits: Array<[number, number, Entry]> = [];
  for (const length of lengths.keys()) {
    if (length > text.length) continue;
    // powers of the bases for the character leaving the window
    let powA = 1;
    let powB = 1;
    for (let i = 1; i < length; i++) {
      powA = (powA * BASE_A) % MOD_A;
      powB = (powB * BASE_B) % MOD_B;
    }
    let a = 0;
    let b = 0;
    for (let i = 0; i < length; i++) {
      const c = unitAt(text, i);
      a = (a * BASE_A + c) % MOD_A;
      b = (b * BASE_B + c) % MOD_B;
    }
    for (let start = 0; ; start++) {
      const entry = entries.get(`${length}:${a}:${b}`);
      if (entry) hits.push([start, start + length, entry]);
      const end = start + length;
      if (end >= text.length) break;
      const out = unitAt(text, start);
      const inc = unitAt(text, end);
      a = ((a - ((out * powA) % MOD_A) + MOD_A) * BASE_A + inc) % MOD_A;
      b = ((b - ((out * powB) % MOD_B) + MOD_B) * BASE_B + inc) % MOD_B;
    }
  }
  return hits;
}

export function redact(text: string, now = Date.now()): string {
  if (entries.size === 0) return text;
  expire(now);
  const hits = matches(text);
  if (hits.length === 0) return text;
  hits.sort((x, y) => x[0] - y[0] || y[1] - x[1]);
  let out = "";
  let at = 0;
  for (const [start, end] of hits) {
    if (end <= at) continue;
    out += text.slice(at, Math.max(at, start)) + (start >= at ? REDACTED : "");
    at = end;
  }
  return out + text.slice(at);
}

/**
 * The owners of registered values found in `bytes` (UTF-8 text, e.g. a line of a container's
 * output), and whether any unowned one was found. The bytes are decoded into a unit array that is
 * zeroed before returning: no string of the text is made.
 */
export function findSecretValues(bytes: Uint8Array, now = Date.now()): { owners: string[]; unowned: boolean } {
  if (entries.size === 0) return { owners: [], unowned: false };
  expire(now);
  let count = 0;
  forEachUnit(bytes, false, () => void count++);
  const units = new Uint16Array(count);
  let i = 0;
  forEachUnit(bytes, false, (c) => void (units[i++] = c));
  try {
    const hits = matches(units);
    const owners = new Set(hits.flatMap(([, , entry]) => (entry.owner === undefined ? [] : [entry.owner])));
    return { owners: [...owners], unowned: hits.some(([, , entry]) => entry.owner === undefined) };
  } finally {
    units.fill(0);
  }
}
