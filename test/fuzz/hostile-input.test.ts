/**
 * Hostile input (issue 13), the synchronous targets: mutated dso.yaml files, container labels,
 * DSO volume options, secret and file names. Seeded and bounded; each target prints its figures
 * (cases, crashes, hangs) and fails with the shrunk counterexample. bench/fuzz.ts runs the same
 * properties with many more cases.
 */
import { describe, expect, test } from "bun:test";
import { expectClean, fuzzRuns } from "../support/fuzz.ts";
import { fuzzConfig, fuzzConfigRewrites, fuzzLabels, fuzzNames, fuzzVolumeOptions } from "./properties.ts";


describe("hostile input", () => {
  test("a mutated dso.yaml gives a config or one-line errors with their line, never a crash or a hang", async () => {
    expectClean(await fuzzConfig(fuzzRuns(100)));
  }, 120_000);

  test("a valid dso.yaml keeps its meaning under comments, CRLF, re-indenting, key order, BOM and JSON form", async () => {
    expectClean(await fuzzConfigRewrites(fuzzRuns(100)));
  }, 60_000);

  test("any container label map gives a selection or warnings naming the label, never a throw", async () => {
    expectClean(await fuzzLabels(fuzzRuns(500)));
  }, 60_000);

  test("any DSO volume option map is accepted or refused with one line naming the option", async () => {
    expectClean(await fuzzVolumeOptions(fuzzRuns(500)));
  }, 60_000);

  test("every accepted file name stays inside its target directory and is no layout name", async () => {
    expectClean(await fuzzNames(fuzzRuns(1000)));
  }, 60_000);
});
