/**
 * providers/json-bytes.ts: a member of a JSON document found, checked and written in canonical
 * form from its bytes, equal byte for byte to canonicalJson(JSON.parse(text)) whatever the
 * document's spacing, key order and escapes (Vault's Go encoder writes `<` as `\u003c`).
 */
import { describe, expect, test } from "bun:test";
import { canonicalBytes, isEmptyObject, JsonBytesError, kindAt, memberOf } from "../../providers/json-bytes.ts";
import { canonicalJson } from "../../providers/vault/kv.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The same document as Go's encoder and other writers may spell it. */
function spellings(doc: unknown): string[] {
  const plain = JSON.stringify(doc);
  return [
    plain,
    JSON.stringify(doc, null, 2),
    plain.replace(/</g, "\\u003c").replace(/>/g, "\\u003E").replace(/&/g, "\\u0026").replace(/\//g, "\\/"),
    plain.replace(/é/g, "\\u00e9").replace(/😀/g, "\\ud83d\\ude00"),
  ];
}

const VALUES: unknown[] = [
  { b: 1, a: { d: [1, { z: 1, y: 2 }], c: "x" } },
  { s: 'q"\\/\b\f\n\r\t\u0001\u001f\u007f é 😀 \u2028 <&>', "\u00e9k": "x", "10": 1, "2": 2, "": null, t: true, f: false, arr: [], o: {} },
  { lone: "\ud800x\udfff" },
  "a plain string",
];

describe("JSON as bytes", () => {
  test("a member's canonical bytes equal canonicalJson of the parsed value, however the document is spelled", () => {
    for (const value of VALUES) {
      for (const text of spellings({ other: "o", data: value, z: [1] })) {
        const bytes = encode(text);
        expect(decode(canonicalBytes(bytes, memberOf(bytes, "data")!))).toBe(canonicalJson(value));
      }
    }
  });

  test("the last of duplicate keys wins, as in JSON.parse; a missing key is undefined", () => {
    const bytes = encode('{"a":1, "a" : {"k":"v"}}');
    expect(decode(canonicalBytes(bytes, memberOf(bytes, "a")!))).toBe('{"k":"v"}');
    expect(memberOf(bytes, "b")).toBeUndefined();
  });

  test("kinds and empty objects are told from the bytes", () => {
    const bytes = encode('{"o":{ },"p":{"k":1},"s":"x","a":[],"n":5}');
    const at = (key: string) => memberOf(bytes, key)!;
    expect(["o", "p", "s", "a", "n"].map((k) => kindAt(bytes, at(k)))).toEqual(["object", "object", "string", "array", "other"]);
    expect(isEmptyObject(bytes, at("o"))).toBe(true);
    expect(isEmptyObject(bytes, at("p"))).toBe(false);
  });

  test("invalid JSON and a top level that is not an object are refused", () => {
    for (const bad of ['{"a":1', '{"a":1}x', '{"a":01}', '{"a":"\\x"}', "{'a':1}", '{"a":[1,]}', '{"a":"\u0001"}', '{"a":tru}', ""]) {
      expect(() => memberOf(encode(bad), "a")).toThrow(JsonBytesError);
    }
    for (const notObject of ['"x"', "[1]", "3"]) {
      let error: unknown;
      try {
        memberOf(encode(notObject), "a");
      } catch (e) {
        error = e;
      }
      expect((error as JsonBytesError).notObject).toBe(true);
    }
  });

  test("the canonical bytes sit on a buffer of their own (the caller zeroes it)", () => {
    const bytes = encode(JSON.stringify({ data: { k: "x".repeat(500) } }));
    const out = canonicalBytes(bytes, memberOf(bytes, "data")!);
    expect(out.buffer).not.toBe(bytes.buffer);
    new Uint8Array(out.buffer).fill(0);
    expect(out.every((b) => b === 0)).toBe(true);
  });
});
