import { describe, expect, test } from "bun:test";
import { DsoError } from "../../src/errors.ts";
import { assertValidFileSet, assertValidName, normaliseTargetPath } from "../../src/delivery/file-names.ts";

const file = (name: string) => ({ name, content: new Uint8Array([1]), mode: 0o400, uid: 0, gid: 0 });

function refusal(fn: () => unknown): DsoError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(DsoError);
    expect((error as DsoError).code).toBe("DELIVERY_REFUSED");
    return error as DsoError;
  }
  throw new Error("expected a refusal");
}

describe("secret file names", () => {
  test.each(["db_password", "api.key", "-starts-with-dash", ".env", "ключ", "a".repeat(255)])("accepts %p", (name) => {
    expect(() => assertValidName(name)).not.toThrow();
  });

  test.each([
    ["", "must not be empty"],
    [".", "directory reference"],
    ["..", "directory reference"],
    ["../etc/passwd", 'must not contain "/"'],
    ["..data", 'must not start with ".."'],
    ["..dso_x", 'must not start with ".."'],
    ["a/b", 'must not contain "/"'],
    ["/etc/shadow", 'must not contain "/"'],
    ["nul\0byte", "control character"],
    ["new\nline", "control character"],
    ["del\u007f", "control character"],
    ["é".repeat(128), "at most 255 bytes"],
  ])("refuses %p", (name, problem) => {
    expect(refusal(() => assertValidName(name)).message).toContain(problem);
  });

  test("the refusal prints a hostile name escaped, on one line, and shortened", () => {
    const message = refusal(() => assertValidName(`x\n${"y".repeat(500)}`)).message;
    expect(message).not.toContain("\n");
    expect(message).toContain("\\n");
    expect(message.length).toBeLessThan(200);
  });

  test("a file set with a repeated name or a bad uid is refused", () => {
    expect(refusal(() => assertValidFileSet([file("a"), file("a")])).message).toContain("twice");
    expect(refusal(() => assertValidFileSet([{ ...file("a"), uid: -1 }])).message).toContain("uid");
    expect(assertValidFileSet([file("a"), file("b")])).toEqual(["a", "b"]);
  });
});

describe("target paths", () => {
  test("are normalised", () => {
    expect(normaliseTargetPath("/run//secrets/./")).toBe("/run/secrets");
  });
  test.each(["run/secrets", "/run/../etc", "/", "/run/se\ncrets"])("refuses %p", (path) => {
    refusal(() => normaliseTargetPath(path));
  });
});
