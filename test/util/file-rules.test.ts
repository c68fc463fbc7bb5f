import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/index.ts";
import { assertValidFileSet } from "../../src/delivery/file-names.ts";
import { parseDriverOptions } from "../../src/delivery/plugin/driver-options.ts";
import { selectContainer } from "../../src/reloader/selection.ts";
import { fileNameProblem, parseFileMode, parseOwnerId, targetPathProblem } from "../../src/util/file-rules.ts";

const { config } = parseConfig("providers:\n  p:\n    type: file\n    allow_undeclared: true\n", "dso.yaml", {});

describe("one file-mode rule everywhere: 0000–0777, no setuid, setgid or sticky bits", () => {
  test("the rule", () => {
    expect(parseFileMode("0400")).toBe(0o400);
    expect(parseFileMode("400")).toBe(0o400);
    expect(parseFileMode("0o440")).toBe(0o440);
    for (const bad of ["4755", "04755", "2755", "1777", "0800", "rwx", ""]) expect(parseFileMode(bad)).toBeUndefined();
    expect(parseOwnerId("1000")).toBe(1000);
    for (const bad of ["-1", "4294967295", "1e3", "x"]) expect(parseOwnerId(bad)).toBeUndefined();
  });

  test("labels, volume options, dso.yaml and delivery all refuse a setuid mode", () => {
    const labelled = selectContainer({ id: "c", name: "c", labels: { "dso.reloader": "true", "dso.secrets": "s", "dso.inject.mode": "4755" } }, config);
    expect(labelled.selected).toBe(false);
    expect(labelled.warnings.join()).toContain("dso.inject.mode");
    expect(() => parseDriverOptions({ secrets: "s", mode: "4755" })).toThrow("mode");
    expect(() => parseConfig('providers:\n  p:\n    type: file\ndefaults:\n  inject:\n    mode: "4755"\n', "dso.yaml", {})).toThrow("0777");
    expect(() => assertValidFileSet([{ name: "s", content: new Uint8Array(), mode: 0o4755, uid: 0, gid: 0 }])).toThrow("setuid");
  });
});

describe("one target-path rule and one file-name rule (counterexamples found by test/fuzz)", () => {
  const withPath = (path: string) => ({ id: "c".repeat(64), name: "web", labels: { "dso.reloader": "true", "dso.secrets": "db", "dso.inject.path": path } });

  test("a label path delivery would refuse (the root, DEL, a lone surrogate) skips the container instead", () => {
    for (const [path, problem] of [
      ["//", "must not be the container's root directory"],
      ["/run/\u007fx", "must not contain control characters"],
      ["/\ud800", "must be valid Unicode"],
    ] as const) {
      const outcome = selectContainer(withPath(path), config);
      expect(outcome.selected).toBe(false);
      expect(outcome.warnings.join("\n")).toContain(problem);
      expect(targetPathProblem(path)).toStartWith(problem);
    }
  });

  test("dso.yaml refuses the same inject paths", () => {
    expect(() => parseConfig("defaults:\n  inject:\n    path: /\n", "dso.yaml", {})).toThrow("defaults.inject.path: must not be the container's root directory");
    expect(() => parseConfig('secrets:\n  - name: x\n    path: "/./"\n', "dso.yaml", {})).toThrow("secrets.0.path: must not be the container's root directory");
  });

  test("a name with a lone surrogate is refused: on disk it would become U+FFFD, colliding with another name", () => {
    expect(fileNameProblem("\ud800")).toBe("must be valid Unicode (it holds a lone surrogate)");
    expect(fileNameProblem("a\udc00b")).toBe("must be valid Unicode (it holds a lone surrogate)");
    expect(fileNameProblem("\u{1F511}")).toBeUndefined();
  });

  test("warnings quote label values with DEL and C1 controls escaped", () => {
    const outcome = selectContainer({ id: "c".repeat(64), name: "web", labels: { "dso.reloader": "true", "dso.secrets": "db", "dso.inject.mode": "\u007f\u009b2J" } }, config);
    expect(outcome.warnings.join("\n")).toContain('label dso.inject.mode="\\u007f\\u009b2J" must be');
  });
});
