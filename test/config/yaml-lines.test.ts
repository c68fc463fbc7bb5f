import { describe, expect, test } from "bun:test";
import { findSyntaxErrorLine, indexYamlLines } from "../../src/config/yaml-lines.ts";

const LINES = [
  "# dso.yaml", // 1
  'version: "2"', // 2
  "providers:", // 3
  "  aws-prod:   # comment", // 4
  "    type: aws", // 5
  "    config:", // 6
  '      "quoted key": x', // 7
  "      'it''s': y", // 8
  "", // 9
  "secrets:", // 10
  "- name: first", // 11
  "  inject:", // 12
  "    path: /run/x", // 13
  "  mappings: {a: b}", // 14
  "  note: |", // 15
  "    name: not a key", // 16
  "    - not an item", // 17
  "- name: second", // 18
  "  targets:", // 19
  "    containers:", // 20
  "      - api", // 21
  "      - worker", // 22
  "    labels:", // 23
  '      dso.injection: "enabled"', // 24
  "agent: &agent", // 25
  "  cache: true # inline comment", // 26
  "matrix:", // 27
  "  - - a", // 28
  "    - b", // 29
  "  - key: v", // 30
  "    other: w", // 31
];

const index = indexYamlLines(LINES.join("\n"));

describe("the YAML line locator", () => {
  const cases: [string | (string | number)[], number][] = [
    ["version", 2],
    ["providers.aws-prod", 4],
    ["providers.aws-prod.type", 5],
    [["providers", "aws-prod", "config", "quoted key"], 7],
    [["providers", "aws-prod", "config", "it's"], 8],
    ["secrets.0", 11],
    ["secrets.0.name", 11],
    ["secrets.0.inject.path", 13],
    ["secrets.0.note", 15],
    ["secrets.1.name", 18],
    ["secrets.1.targets.containers.1", 22],
    [["secrets", 1, "targets", "labels", "dso.injection"], 24],
    ["agent.cache", 26],
    ["matrix.0.1", 29],
    ["matrix.1.other", 31],
  ];
  for (const [path, line] of cases) {
    test(`finds ${JSON.stringify(path)} on line ${line}`, () => {
      expect(index.lineOf(path)).toBe(line);
    });
  }

  test("falls back to the nearest parent inside flow collections and for missing keys", () => {
    expect(index.lineOf("secrets.0.mappings.a")).toBe(14);
    expect(index.lineOf("secrets.1.inject.mode")).toBe(18);
    expect(index.lineOf("nothing.here")).toBe(1);
  });

  test("does not read keys inside a block scalar", () => {
    expect(index.lineOf("secrets.0.note.name")).toBe(15);
    expect(index.lineOf("secrets.2")).toBe(10);
  });

  test("returns the value text written on the key's line without its comment", () => {
    expect(index.rawValueOf("agent.cache")).toBe("true");
    expect(index.rawValueOf("version")).toBe('"2"');
    expect(index.rawValueOf("providers.aws-prod")).toBeUndefined();
  });

  test("reports a key written twice in one mapping", () => {
    const dup = indexYamlLines("a:\n  b: 1\n  c: 2\n  b: 3\nd:\n  b: 4\n");
    expect(dup.duplicates).toEqual([{ path: ["a", "b"], line: 4, firstLine: 2 }]);
  });

  test("handles a sequence written at the same indent as its key", () => {
    const compact = indexYamlLines("containers:\n- a\n- b\nnext: 1\n");
    expect(compact.lineOf("containers.1")).toBe(3);
    expect(compact.lineOf("next")).toBe(4);
  });
});

describe("the YAML syntax error line finder", () => {
  test("points at the line where parsing first breaks for good", () => {
    expect(findSyntaxErrorLine("a: 1\nb: [\nc: 2\n")).toBe(2);
    expect(findSyntaxErrorLine("a: 1\n  b: 2\nc: 3\n")).toBe(2);
  });

  test("skips multi-line values that close later", () => {
    expect(findSyntaxErrorLine("a: {b: 1,\n  c: 2}\nd: 'x\ne: 1\n")).toBe(3);
  });

  test("returns undefined for valid YAML", () => {
    expect(findSyntaxErrorLine("a: 1\n")).toBeUndefined();
  });
});

describe("bisecting a large broken file (found by test/fuzz)", () => {
  test("stops after a bounded amount of re-parsing and leaves the position to the yaml package", () => {
    // An unclosed flow list on line 1, then 400 lines of 600 bytes: every prefix fails, so bisecting would re-parse 48 MB.
    const lines = Array.from({ length: 400 }, (_, i) => `k${i}: ${"v".repeat(600)}`);
    expect(findSyntaxErrorLine(`bad: [\n${lines.join("\n")}\n`)).toBeUndefined();
    expect(findSyntaxErrorLine(`bad: [\n${lines.slice(0, 3).join("\n")}\n`)).toBe(1);
  });
});
