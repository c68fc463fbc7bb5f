import { describe, expect, test } from "bun:test";
import { findSecretValues, forgetOwner, forgetSecretValue, REDACT_TTL_MS, redact, registerSecretBytes, registerSecretValue } from "../../src/log/redact.ts";

describe("log redaction", () => {
  test("a registered value is replaced, also in its JSON-escaped form", () => {
    const pem = "-----BEGIN KEY-----\nMIIB\"quoted\"\\x\n-----END KEY-----";
    registerSecretValue(pem);
    const line = JSON.stringify({ msg: "oops", detail: `value was ${pem}` });
    expect(line).toContain("MIIB");
    expect(redact(line)).not.toContain("MIIB");
    expect(redact(`raw ${pem}`)).toBe("raw [REDACTED]");
    forgetSecretValue(pem);
    expect(redact(line)).toContain("MIIB");
  });

  test("very short values are not registered (they would shred ordinary words)", () => {
    registerSecretValue("abc");
    expect(redact("abc abc")).toBe("abc abc");
  });
});

describe("the redactor keeps no value", () => {
  test("what it holds is a length and keyed hashes: no copy of the value in its state", async () => {
    const value = "redactor-planted-Z9q8-unique";
    registerSecretValue(value);
    expect(redact(`error: ${value} was rejected`)).toBe("error: [REDACTED] was rejected");
    const module = await import("../../src/log/redact.ts");
    // The module's own state, as far as a reader of the process can see it, never holds the text.
    expect(JSON.stringify(Object.entries(module))).not.toContain(value);
    expect(Bun.inspect(module)).not.toContain(value);
    forgetSecretValue(value);
    expect(redact(value)).toBe(value);
  });

  test("several values, overlapping and repeated, in one line", () => {
    registerSecretValue("alpha-secret-1");
    registerSecretValue("secret-1-and-more");
    const line = "x alpha-secret-1 y alpha-secret-1-and-more z";
    const out = redact(line);
    expect(out).not.toContain("alpha-secret-1");
    expect(out).not.toContain("secret-1-and-more");
    expect(out.startsWith("x [REDACTED] y ")).toBe(true);
    forgetSecretValue("alpha-secret-1");
    forgetSecretValue("secret-1-and-more");
  });

  test("entries expire, so the redactor does not grow for ever", () => {
    const t0 = 1_000_000;
    registerSecretValue("expiring-planted-value", t0);
    expect(redact("expiring-planted-value", t0 + 1000)).toBe("[REDACTED]");
    expect(redact("expiring-planted-value", t0 + 2 * 60 * 60_000)).toBe("expiring-planted-value");
  });
});

describe("values held as bytes", () => {
  const enc = new TextEncoder();
  test("bytes register the same forms as text: plain, JSON-escaped, non-ASCII, invalid UTF-8", () => {
    for (const value of ["bytes-secret-1", 'multi\nline"q\\', "héllo wörld €𝄞 x", "tab\there\u0001x"]) {
      registerSecretBytes(enc.encode(value), { owner: `t/${value}` });
      expect(redact(`a ${value} b`)).toBe("a [REDACTED] b");
      expect(redact(JSON.stringify({ m: `x${value}y` }))).not.toContain(JSON.stringify(value).slice(1, -1));
      forgetOwner(`t/${value}`);
      expect(redact(`a ${value} b`)).toBe(`a ${value} b`);
    }
    const invalid = new Uint8Array([0x61, 0x62, 0xff, 0x63, 0x64, 0x65]);
    registerSecretBytes(invalid, { owner: "t/invalid" });
    expect(redact(`<${new TextDecoder().decode(invalid)}>`)).toBe("<[REDACTED]>");
    forgetOwner("t/invalid");
  });

  test("an owner's next value replaces its previous one at once; owned values do not expire", () => {
    const t0 = Date.now();
    registerSecretBytes(enc.encode("owned-value-one"), { owner: "p/db", now: t0 });
    registerSecretValue("unowned-value-x", t0);
    const later = t0 + REDACT_TTL_MS + 1;
    expect(redact("owned-value-one unowned-value-x", later)).toBe("[REDACTED] unowned-value-x");
    registerSecretBytes(enc.encode("owned-value-two"), { owner: "p/db", now: later });
    expect(redact("owned-value-one owned-value-two", later)).toBe("owned-value-one [REDACTED]");
    forgetOwner("p/db");
  });

  test("findSecretValues names the owners found in bytes, without changing or keeping them", () => {
    registerSecretBytes(enc.encode("printed-by-app-42"), { owner: "p/api@#" });
    const line = enc.encode("INFO starting with key=printed-by-app-42 ok");
    expect(findSecretValues(line)).toEqual({ owners: ["p/api@#"], unowned: false });
    expect(new TextDecoder().decode(line)).toContain("printed-by-app-42");
    expect(findSecretValues(enc.encode("nothing to see"))).toEqual({ owners: [], unowned: false });
    forgetOwner("p/api@#");
    expect(findSecretValues(line).owners).toEqual([]);
  });
});
