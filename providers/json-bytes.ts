/**
 * JSON read as bytes, for fingerprints made from values in a long-lived provider process (the file
 * provider's JSON documents, Vault KV v1): find a top-level member and write its canonical form
 * into a buffer the caller zeroes, without ever making a JS string of a value. JSON.parse would
 * leave every value as a string in the heap until the garbage collector reuses its cell, and a
 * string cannot be zeroed (issue 18: 8–17 copies per value after a few polls).
 *
 * Canonical form = canonicalJson(JSON.parse(text)) of providers/vault/kv.ts, byte for byte: object
 * keys sorted (as Array.prototype.sort sorts strings) at every level, no whitespace, strings
 * escaped as JSON.stringify escapes them (Vault's Go encoder writes `<` as `\u003c`, which
 * JSON.stringify does not). One difference: a number is kept as written (`1.0` stays `1.0`), where
 * JSON.stringify would normalise it (`1`); making that string is what this module avoids.
 * Keys are decoded to strings: they are names (file names in the container), not values.
 */

/** Not valid JSON (`notObject`: valid, but its top level is not an object). */
export class JsonBytesError extends Error {
  constructor(
    message: string,
    readonly notObject = false,
  ) {
    super(message);
  }
}

/** Where a member's value sits in the document: bytes[start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const keyDecoder = new TextDecoder("utf-8", { fatal: true });

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

function skipSpace(bytes: Uint8Array, at: number): number {
  while (isSpace(bytes[at])) at++;
  return at;
}

function fail(what: string, at: number): never {
  throw new JsonBytesError(`${what} at byte ${at}`);
}

function expectByte(bytes: Uint8Array, at: number, byte: number): number {
  if (bytes[at] !== byte) fail(`expected '${String.fromCharCode(byte)}'`, at);
  return at + 1;
}

const isHex = (b: number | undefined) => b !== undefined && ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66));
const isDigit = (b: number | undefined) => b !== undefined && b >= 0x30 && b <= 0x39;

/** The end (past the closing quote) of the string starting at `at` (its opening quote), checked. */
function skipString(bytes: Uint8Array, at: number): number {
  at = expectByte(bytes, at, QUOTE);
  for (;;) {
    const b = bytes[at];
    if (b === undefined) fail("unterminated string", at);
    if (b === QUOTE) return at + 1;
    if (b < 0x20) fail("control character in string", at);
    if (b !== BACKSLASH) {
      at++;
      continue;
    }
    const e = bytes[at + 1];
    if (e === 0x75) {
      for (let i = 2; i < 6; i++) if (!isHex(bytes[at + i])) fail("bad \\u escape", at);
      at += 6;
    } else if (e !== undefined && '"\\/bfnrt'.includes(String.fromCharCode(e))) {
      at += 2;
    } else {
      fail("bad escape", at);
    }
  }
}

function skipNumber(bytes: Uint8Array, at: number): number {
  if (bytes[at] === 0x2d) at++;
  if (bytes[at] === 0x30) at++;
  else if (isDigit(bytes[at])) while (isDigit(bytes[at])) at++;
  else fail("bad number", at);
  if (bytes[at] === 0x2e) {
    at++;
    if (!isDigit(bytes[at])) fail("bad number", at);
    while (isDigit(bytes[at])) at++;
  }
  if (bytes[at] === 0x65 || bytes[at] === 0x45) {
    at++;
    if (bytes[at] === 0x2b || bytes[at] === 0x2d) at++;
    if (!isDigit(bytes[at])) fail("bad number", at);
    while (isDigit(bytes[at])) at++;
  }
  return at;
}

function skipLiteral(bytes: Uint8Array, at: number, word: string): number {
  for (let i = 0; i < word.length; i++) if (bytes[at + i] !== word.charCodeAt(i)) fail("bad literal", at);
  return at + word.length;
}

/** Members of the object at `at`: each key (decoded) and its value's range; calls `each` in document order. */
function forEachMember(bytes: Uint8Array, at: number, each: (key: string, value: ByteRange) => void): number {
  at = skipSpace(bytes, expectByte(bytes, at, 0x7b));
  if (bytes[at] === 0x7d) return at + 1;
  for (;;) {
    const keyEnd = skipString(bytes, at);
    const key = JSON.parse(keyDecoder.decode(bytes.subarray(at, keyEnd))) as string;
    at = skipSpace(bytes, expectByte(bytes, skipSpace(bytes, keyEnd), 0x3a));
    const end = skipValue(bytes, at);
    each(key, { start: at, end });
    at = skipSpace(bytes, end);
    if (bytes[at] === 0x7d) return at + 1;
    at = skipSpace(bytes, expectByte(bytes, at, 0x2c));
  }
}

function forEachElement(bytes: Uint8Array, at: number, each: (value: ByteRange) => void): number {
  at = skipSpace(bytes, expectByte(bytes, at, 0x5b));
  if (bytes[at] === 0x5d) return at + 1;
  for (;;) {
    const end = skipValue(bytes, at);
    each({ start: at, end });
    at = skipSpace(bytes, end);
    if (bytes[at] === 0x5d) return at + 1;
    at = skipSpace(bytes, expectByte(bytes, at, 0x2c));
  }
}

/** The end of the value starting at `at` (no leading space), checked. */
function skipValue(bytes: Uint8Array, at: number): number {
  const b = bytes[at];
  if (b === QUOTE) return skipString(bytes, at);
  if (b === 0x7b) return forEachMember(bytes, at, () => {});
  if (b === 0x5b) return forEachElement(bytes, at, () => {});
  if (b === 0x74) return skipLiteral(bytes, at, "true");
  if (b === 0x66) return skipLiteral(bytes, at, "false");
  if (b === 0x6e) return skipLiteral(bytes, at, "null");
  if (b === 0x2d || isDigit(b)) return skipNumber(bytes, at);
  return fail(b === undefined ? "unexpected end" : "unexpected byte", at);
}

/** What the value at `range` is, by its first byte. */
export function kindAt(bytes: Uint8Array, range: ByteRange): "object" | "array" | "string" | "other" {
  const b = bytes[range.start];
  return b === 0x7b ? "object" : b === 0x5b ? "array" : b === QUOTE ? "string" : "other";
}

/** Whether the object at `range` has no members. */
export function isEmptyObject(bytes: Uint8Array, range: ByteRange): boolean {
  return kindAt(bytes, range) === "object" && bytes[skipSpace(bytes, range.start + 1)] === 0x7d;
}

/**
 * The value of member `key` of the document's top-level object (the last one, as JSON.parse
 * keeps), or undefined when it has none. Throws JsonBytesError when the document is not valid
 * JSON or not an object (then `notObject` is set).
 */
export function memberOf(bytes: Uint8Array, key: string): ByteRange | undefined {
  const start = skipSpace(bytes, 0);
  if (bytes[start] !== 0x7b) {
    skipValue(bytes, start);
    throw new JsonBytesError("not a JSON object", true);
  }
  let found: ByteRange | undefined;
  const end = forEachMember(bytes, start, (k, value) => {
    if (k === key) found = value;
  });
  if (skipSpace(bytes, end) !== bytes.length) fail("trailing bytes", end);
  return found;
}

/** A growable byte buffer on its own ArrayBuffer; every buffer it drops is zeroed first. */
class ZeroingWriter {
  private buffer: Uint8Array;
  private length = 0;

  constructor(capacity: number) {
    this.buffer = new Uint8Array(new ArrayBuffer(Math.max(64, capacity)));
  }

  private room(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const next = new Uint8Array(new ArrayBuffer(Math.max(this.buffer.length * 2, this.length + extra)));
    next.set(this.buffer.subarray(0, this.length));
    this.buffer.fill(0);
    this.buffer = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buffer[this.length++] = b;
  }

  bytes(from: Uint8Array): void {
    this.room(from.length);
    this.buffer.set(from, this.length);
    this.length += from.length;
  }

  /** ASCII text that is not a value (keys' JSON, escapes). */
  ascii(text: string): void {
    for (let i = 0; i < text.length; i++) this.byte(text.charCodeAt(i));
  }

  /** The bytes written: a view of a buffer the caller must zero (`.buffer`). */
  done(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

const keyEncoder = new TextEncoder();
const SHORT_ESCAPES: Record<number, string> = { 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r", 0x22: '\\"', 0x5c: "\\\\" };

function hex4(bytes: Uint8Array, at: number): number {
  let n = 0;
  for (let i = 0; i < 4; i++) {
    const b = bytes[at + i]!;
    n = n * 16 + (b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x57);
  }
  return n;
}

/** One UTF-16 unit or code point as JSON.stringify writes it: escaped below 0x20, `"` and `\`, lone surrogates; else UTF-8. */
function writeCodePoint(out: ZeroingWriter, cp: number): void {
  const short = SHORT_ESCAPES[cp];
  if (short) return out.ascii(short);
  if (cp < 0x20 || (cp >= 0xd800 && cp <= 0xdfff)) return out.ascii(`\\u${cp.toString(16).padStart(4, "0")}`);
  if (cp < 0x80) return out.byte(cp);
  if (cp < 0x800) {
    out.byte(0xc0 | (cp >> 6));
    return out.byte(0x80 | (cp & 0x3f));
  }
  if (cp < 0x10000) {
    out.byte(0xe0 | (cp >> 12));
    out.byte(0x80 | ((cp >> 6) & 0x3f));
    return out.byte(0x80 | (cp & 0x3f));
  }
  out.byte(0xf0 | (cp >> 18));
  out.byte(0x80 | ((cp >> 12) & 0x3f));
  out.byte(0x80 | ((cp >> 6) & 0x3f));
  out.byte(0x80 | (cp & 0x3f));
}

/** The string at [start, end) (quotes included, already checked), re-escaped as JSON.stringify would. */
function writeString(bytes: Uint8Array, start: number, end: number, out: ZeroingWriter): void {
  out.byte(QUOTE);
  let run = start + 1;
  const last = end - 1;
  for (let at = run; at < last; ) {
    const b = bytes[at]!;
    if (b !== BACKSLASH) {
      at++;
      continue;
    }
    out.bytes(bytes.subarray(run, at));
    const e = bytes[at + 1]!;
    if (e !== 0x75) {
      const plain = e === 0x62 ? 0x08 : e === 0x66 ? 0x0c : e === 0x6e ? 0x0a : e === 0x72 ? 0x0d : e === 0x74 ? 0x09 : e;
      writeCodePoint(out, plain);
      at += 2;
    } else {
      let cp = hex4(bytes, at + 2);
      at += 6;
      if (cp >= 0xd800 && cp <= 0xdbff && bytes[at] === BACKSLASH && bytes[at + 1] === 0x75) {
        const low = hex4(bytes, at + 2);
        if (low >= 0xdc00 && low <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          at += 6;
        }
      }
      writeCodePoint(out, cp);
    }
    run = at;
  }
  out.bytes(bytes.subarray(run, last));
  out.byte(QUOTE);
}

function writeCanonical(bytes: Uint8Array, range: ByteRange, out: ZeroingWriter): void {
  const kind = kindAt(bytes, range);
  if (kind === "string") return writeString(bytes, range.start, range.end, out);
  if (kind === "object") {
    const members = new Map<string, ByteRange>();
    forEachMember(bytes, range.start, (key, value) => void members.set(key, value));
    out.byte(0x7b);
    [...members.keys()].sort().forEach((key, i) => {
      if (i > 0) out.byte(0x2c);
      out.bytes(keyEncoder.encode(JSON.stringify(key)));
      out.byte(0x3a);
      writeCanonical(bytes, members.get(key)!, out);
    });
    return out.byte(0x7d);
  }
  if (kind === "array") {
    out.byte(0x5b);
    let first = true;
    forEachElement(bytes, range.start, (element) => {
      if (!first) out.byte(0x2c);
      first = false;
      writeCanonical(bytes, element, out);
    });
    return out.byte(0x5d);
  }
  // Numbers and literals, as written.
  out.bytes(bytes.subarray(range.start, range.end));
}

/**
 * The canonical form of the (checked) value at `range`. The result is a view of a buffer of its
 * own: the caller zeroes it (`new Uint8Array(result.buffer).fill(0)`) once it is hashed.
 */
export function canonicalBytes(bytes: Uint8Array, range: ByteRange): Uint8Array {
  const out = new ZeroingWriter(range.end - range.start);
  writeCanonical(bytes, range, out);
  return out.done();
}
