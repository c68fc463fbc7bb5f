import { describe, expect, test } from "bun:test";
import { forgetSecretValue, redact, registerSecretValue } from "../../src/log/redact.ts";

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
