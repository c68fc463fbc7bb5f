/**
 * Byte encoders for template functions and formats. Each one has a size function and a writer, so
 * a result is written into a buffer of exactly its size: no JS string of a value is ever made.
 * Input is UTF-8 by convention; bytes of 0x80 and up pass through unchanged where a format allows.
 */

const HEX = "0123456789ABCDEF";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Int16Array(256).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

export interface Encoder {
  size(input: Uint8Array): number;
  /** Writes the encoding of `input` at `out[at]`; returns the offset after it. */
  write(input: Uint8Array, out: Uint8Array, at: number): number;
}

export const base64Encoder: Encoder = {
  size: (input) => Math.ceil(input.length / 3) * 4,
  write(input, out, at) {
    let i = 0;
    for (; i + 2 < input.length; i += 3) {
      const n = (input[i]! << 16) | (input[i + 1]! << 8) | input[i + 2]!;
      out[at++] = B64.charCodeAt(n >> 18);
      out[at++] = B64.charCodeAt((n >> 12) & 63);
      out[at++] = B64.charCodeAt((n >> 6) & 63);
      out[at++] = B64.charCodeAt(n & 63);
    }
    const rest = input.length - i;
    if (rest > 0) {
      const n = (input[i]! << 16) | ((rest > 1 ? input[i + 1]! : 0) << 8);
      out[at++] = B64.charCodeAt(n >> 18);
      out[at++] = B64.charCodeAt((n >> 12) & 63);
      out[at++] = rest > 1 ? B64.charCodeAt((n >> 6) & 63) : 61;
      out[at++] = 61;
    }
    return at;
  },
};

/** The decoded size of standard base64 (padding optional, no whitespace); undefined when it is not base64. */
export function base64DecodedSize(input: Uint8Array): number | undefined {
  let n = input.length;
  if (n > 0 && input[n - 1] === 61) n--;
  if (n > 0 && input[n - 1] === 61) n--;
  if (n % 4 === 1) return undefined;
  if (input.length % 4 !== 0 && n !== input.length) return undefined;
  for (let i = 0; i < n; i++) if (B64_INDEX[input[i]!]! < 0) return undefined;
  return Math.floor((n * 3) / 4);
}

export function base64DecodeInto(input: Uint8Array, out: Uint8Array, at: number): number {
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < input.length; i++) {
    const v = B64_INDEX[input[i]!]!;
    if (v < 0) break;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return at;
}

const isUnreserved = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;

/** Go's url.QueryEscape: unreserved bytes kept, space as +, every other byte %XX. */
export const queryEscaper: Encoder = {
  size(input) {
    let n = 0;
    for (const b of input) n += isUnreserved(b) || b === 0x20 ? 1 : 3;
    return n;
  },
  write(input, out, at) {
    for (const b of input) {
      if (isUnreserved(b)) out[at++] = b;
      else if (b === 0x20) out[at++] = 0x2b;
      else {
        out[at++] = 0x25;
        out[at++] = HEX.charCodeAt(b >> 4);
        out[at++] = HEX.charCodeAt(b & 15);
      }
    }
    return at;
  },
};

/** A quoted-string escaper: `"`, `\`, control bytes escaped; `short` maps a byte to its one-letter escape. */
function quotedEscaper(short: Record<number, number>, control: "u" | "x", extra: readonly number[] = []): Encoder {
  const escLength = (b: number) => (short[b] !== undefined || extra.includes(b) ? 2 : b < 0x20 || b === 0x7f ? (control === "u" ? 6 : 4) : 1);
  return {
    size(input) {
      let n = 2;
      for (const b of input) n += escLength(b);
      return n;
    },
    write(input, out, at) {
      out[at++] = 0x22;
      for (const b of input) {
        const s = short[b];
        if (s !== undefined) {
          out[at++] = 0x5c;
          out[at++] = s;
        } else if (extra.includes(b)) {
          out[at++] = 0x5c;
          out[at++] = b;
        } else if (b < 0x20 || b === 0x7f) {
          out[at++] = 0x5c;
          if (control === "u") {
            out[at++] = 0x75;
            out[at++] = 0x30;
            out[at++] = 0x30;
          } else out[at++] = 0x78;
          out[at++] = HEX.charCodeAt(b >> 4);
          out[at++] = HEX.charCodeAt(b & 15);
        } else out[at++] = b;
      }
      out[at++] = 0x22;
      return at;
    },
  };
}

const C = (s: string) => s.charCodeAt(0);
const COMMON_SHORT = { [C('"')]: C('"'), [C("\\")]: C("\\"), [C("\n")]: C("n"), [C("\r")]: C("r"), [C("\t")]: C("t") };

/** A JSON string literal, quotes included (also a YAML double-quoted scalar). */
export const jsonString: Encoder = quotedEscaper({ ...COMMON_SHORT, [C("\b")]: C("b"), [C("\f")]: C("f") }, "u");
/** A double-quoted string with backslash escapes, as Go's %q for ASCII. */
export const quoted: Encoder = quotedEscaper(COMMON_SHORT, "x");
/** A .env value: double-quoted; `$` escaped too so no loader expands it. */
export const envQuoted: Encoder = quotedEscaper(COMMON_SHORT, "x", [C("$")]);

/** Java .properties: `\`, newline, CR, tab, form feed escaped; `=`, `:`, `#`, `!` and a leading space too when `key`. */
export function propertiesEscaper(key: boolean): Encoder {
  const esc = (b: number, first: boolean) =>
    b === 0x5c ? 0x5c : b === 0x0a ? C("n") : b === 0x0d ? C("r") : b === 0x09 ? C("t") : b === 0x0c ? C("f") : (key && (b === 0x3d || b === 0x3a || b === 0x23 || b === 0x21 || b === 0x20)) || (first && b === 0x20) ? b : -1;
  return {
    size(input) {
      let n = 0;
      input.forEach((b, i) => (n += esc(b, i === 0) >= 0 ? 2 : b < 0x20 || b === 0x7f ? 6 : 1));
      return n;
    },
    write(input, out, at) {
      input.forEach((b, i) => {
        const e = esc(b, i === 0);
        if (e >= 0) {
          out[at++] = 0x5c;
          out[at++] = e;
        } else if (b < 0x20 || b === 0x7f) {
          out.set([0x5c, 0x75, 0x30, 0x30, HEX.charCodeAt(b >> 4), HEX.charCodeAt(b & 15)], at);
          at += 6;
        } else out[at++] = b;
      });
      return at;
    },
  };
}

const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;

/** A view without leading and trailing ASCII whitespace (no copy). */
export function trimBytes(input: Uint8Array): Uint8Array {
  let start = 0;
  let end = input.length;
  while (start < end && isSpace(input[start]!)) start++;
  while (end > start && isSpace(input[end - 1]!)) end--;
  return input.subarray(start, end);
}

/** Sprig's indent: `spaces` spaces before every line. */
export const indentSize = (input: Uint8Array, spaces: number): number => {
  let lines = 1;
  for (const b of input) if (b === 0x0a) lines++;
  return input.length + lines * spaces;
};

export function indentInto(input: Uint8Array, spaces: number, out: Uint8Array, at: number): number {
  out.fill(0x20, at, at + spaces);
  at += spaces;
  for (const b of input) {
    out[at++] = b;
    if (b === 0x0a) {
      out.fill(0x20, at, at + spaces);
      at += spaces;
    }
  }
  return at;
}

/** True when every byte is safe unquoted in a .env line. */
export function envBare(input: Uint8Array): boolean {
  if (input.length === 0) return true;
  for (const b of input) {
    const safe = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x2f || b === 0x3a || b === 0x2b || b === 0x40 || b === 0x2c;
    if (!safe) return false;
  }
  return true;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
