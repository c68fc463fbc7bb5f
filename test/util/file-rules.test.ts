import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/index.ts";
import { assertValidFileSet } from "../../src/delivery/file-names.ts";
import { parseDriverOptions } from "../../src/delivery/plugin/driver-options.ts";
import { selectContainer } from "../../src/reloader/selection.ts";
import { parseFileMode, parseOwnerId } from "../../src/util/file-rules.ts";

const { config } = parseConfig("providers:\n  p:\n    type: file\n", "dso.yaml", {});

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
