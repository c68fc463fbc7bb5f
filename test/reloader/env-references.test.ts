/** The `dso.env` label `dso up` writes: parsed strictly, bounded like a `dso.secrets` label (issue 22 review). */
import { describe, expect, test } from "bun:test";
import { parseEnvReferences } from "../../src/reloader/env-references.ts";

describe("dso.env label", () => {
  test("VAR=secret[#key] entries; a malformed entry is reported, never guessed", () => {
    const problems: string[] = [];
    expect(parseEnvReferences("DB=db_password, TOKEN=api#token,9X=a,Y=,Z=s#", problems)).toEqual([
      { variable: "DB", secret: "db_password" },
      { variable: "TOKEN", secret: "api", key: "token" },
    ]);
    expect(problems).toHaveLength(3);
    expect(problems[0]).toContain(`entry "9X=a" is not VAR=<secret>[#key]`);
  });

  test("more references than a dso.secrets label may name: the label is refused as a whole", () => {
    const problems: string[] = [];
    const label = Array.from({ length: 257 }, (_, i) => `V${i}=s${i}`).join(",");
    expect(parseEnvReferences(label, problems)).toEqual([]);
    expect(problems).toEqual(["label dso.env names 257 references; at most 256 per container"]);
  });

  test("a name too long or with controls is refused like a dso.secrets name; the other entries stand", () => {
    const problems: string[] = [];
    const refs = parseEnvReferences(`A=${"n".repeat(3000)},B=ok,C=bad\u0007name`, problems);
    expect(refs).toEqual([{ variable: "B", secret: "ok" }]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain("has a name of 3000 characters");
    expect(problems[1]).toContain("characters other than printable ASCII");
  });
});
