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
