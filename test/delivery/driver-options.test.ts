import { describe, expect, test } from "bun:test";
import { validateDriverOptions } from "../../src/delivery/plugin/driver-options.ts";
import { DsoError } from "../../src/errors.ts";

function refusal(opts: Record<string, string>): DsoError {
  try {
    validateDriverOptions(opts);
  } catch (error) {
    if (error instanceof DsoError) return error;
    throw error;
  }
  throw new Error("expected the options to be refused");
}

describe("DSO volume options are checked at Create, naming the option", () => {
  test("valid options parse", () => {
    expect(validateDriverOptions({ secrets: "db, api", uid: "1000", gid: "1000", mode: "0440" })).toEqual({
      secrets: ["db", "api"],
      uid: 1000,
      gid: 1000,
      mode: 0o440,
    });
  });

  test("no secrets option, or an empty one, is refused", () => {
    const cases: Record<string, string>[] = [{}, { secrets: "" }, { secrets: " , " }, { uid: "1000" }];
    for (const opts of cases) {
      const error = refusal(opts);
      expect(error.code).toBe("BAD_REQUEST");
      expect(error.message).toStartWith("volume option secrets is required");
    }
  });

  test("an unknown option is refused with its name and the known ones", () => {
    const error = refusal({ secrets: "db", secret: "api" });
    expect(error.message).toBe('unknown volume option "secret" (did you mean "secrets"?); a DSO volume takes secrets, uid, gid, mode, strategy, signal');
    expect(refusal({ secrets: "db", size: "1m" }).message).toStartWith('unknown volume option "size";');
  });

  test("a secret named twice and bad ids or modes are refused", () => {
    expect(refusal({ secrets: "db,db" }).message).toBe('volume option secrets names "db" twice');
    expect(refusal({ secrets: "db", uid: "root" }).message).toContain("uid");
    expect(refusal({ secrets: "db", mode: "rw" }).message).toContain("mode");
  });
});

describe("refusals stay one short line (counterexamples found by test/fuzz)", () => {
  test("an unknown option key is quoted escaped and cut short", () => {
    expect(refusal({ ["k".repeat(3000)]: "x" }).message.length).toBeLessThan(200);
    expect(refusal({ "\u0004\u0012": "x" }).message).toStartWith('unknown volume option "\\u0004\\u0012";');
    expect(refusal({ secrets: "db", uid: "1\n2" }).message).toBe('volume option uid="1\\n2" is not a numeric id');
  });
});
