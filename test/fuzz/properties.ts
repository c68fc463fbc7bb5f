/**
 * The hostile-input properties as functions that return their figures, shared by the suite
 * (test/fuzz/*.test.ts, few cases) and bench/fuzz.ts (many). Regression inputs — counterexamples
 * fuzzing once found — are listed with each target and always run first.
 */
import fc from "fast-check";
import { type FuzzFigures, runFuzz, workerCheck } from "../support/fuzz.ts";
import { type ConfigCase, configCase, rewriteCase, type RewriteCase } from "./config-cases.ts";
import type { LabelCase, NameCase } from "./checks.ts";

/** Per-case bound of the synchronous targets (a 2-core machine shared with other test runs). */
const SYNC_CASE_BOUND_MS = 8_000;

async function inWorker<T>(target: string, arbitrary: fc.Arbitrary<T>, runs: number, examples: T[] = []): Promise<FuzzFigures> {
  const worker = workerCheck<T>(target, SYNC_CASE_BOUND_MS);
  try {
    return await runFuzz({ target, arbitrary, check: worker.check, runs, caseTimeoutMs: SYNC_CASE_BOUND_MS + 2_000, examples });
  } finally {
    worker.close();
  }
}

/** Counterexamples found by this fuzzer, kept as regression cases (see docs/reliability.md). */
export const CONFIG_REGRESSIONS: ConfigCase[] = [
  // A self-referencing anchor hung the parser (expandEnvInTree walked the cycle forever).
  { seed: 0, tree: [], text: [{ op: "prepend", snippet: "a: &a {x: *a}\n" }], bytes: [] },
  // Seven levels of nine aliases: 17 s and 270 MB to refuse.
  { seed: 0, tree: [], text: [{ op: "aliasBomb", levels: 7, width: 9, under: "agent" }], bytes: [] },
  // A tab in a provider name was listed raw in "(configured: ...)" (bench/fuzz.ts, 3,000 cases).
  {
    seed: 8,
    tree: [{ op: "rename", pick: 0, key: "\u0800\u{10000}" }, { op: "rename", pick: 1114593905, key: "stage" }],
    text: [{ op: "swapLines", a: 23365619, b: 1468866791 }],
    bytes: [{ op: "setByte", at: 1487804187, byte: 9 }],
  },
];

export const fuzzConfig = (runs: number) => inWorker("config", configCase, runs, CONFIG_REGRESSIONS);
export const fuzzConfigRewrites = (runs: number) => inWorker<RewriteCase>("configRewrite", rewriteCase, runs);

// ---- labels

const LABEL_KEYS = [
  "dso.reloader", "dso.secrets", "dso.update.strategy", "dso.update.signal", "dso.inject.path", "dso.inject.mode",
  "dso.inject.uid", "dso.inject.gid", "dso.env-version", "dso.managed", "dso.", "dso.secrets ", "DSO.secrets",
];
const hostileText = fc.oneof(
  fc.constantFrom(
    "true", "false", "TRUE", "", " ", "app/db", "app/db,api", " app/db , ,", "../../etc/shadow", "..data", "..dso_1", ".", "..",
    "/run/secrets", "/", "//", "/run/./x", "/run/../etc", "run", "/run/\u007fx", "/run/\u0000x", "/a\nb", "0400", "4777", "0o777",
    "-1", "4294967294", "4294967295", "99999999999", "signal", "rolling", "hup", "SIGKILL", "sig", "a\nb", "a\u001b[31mred", "\u2028",
  ),
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.integer({ min: 300, max: 5000 }).map((n) => "a".repeat(n)),
  fc.array(fc.constantFrom("app/db", "x", "../y", "a/..", "..data", "k\u0000", " "), { maxLength: 5 }).map((names) => names.join(",")),
);
const labelMap = fc.dictionary(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...LABEL_KEYS) }, fc.string({ maxLength: 12 }).map((s) => `dso.${s}`), fc.string({ maxLength: 8 })), hostileText, {
  maxKeys: 8,
});
export const labelCase: fc.Arbitrary<LabelCase> = fc.record({
  labels: labelMap.map((l) => ({ "dso.reloader": "true", ...l })),
  image: labelMap,
  valueKeys: fc.array(fc.oneof(fc.constantFrom("value", "user", "..data", "../x", "a/b", "", ".", "ok"), fc.string({ unit: "binary", maxLength: 10 })), { maxLength: 3 }),
});
export const LABEL_REGRESSIONS: LabelCase[] = [
  // Accepted by the label rule, refused by delivery: the container's root.
  { labels: { "dso.reloader": "true", "dso.secrets": "app/db", "dso.inject.path": "//" }, image: {}, valueKeys: [] },
  // DEL went unescaped into the warning.
  { labels: { "dso.reloader": "true", "dso.secrets": "app/db", "dso.inject.mode": "/run/\u007fx" }, image: {}, valueKeys: [] },
];
export const fuzzLabels = (runs: number) => inWorker("labels", labelCase, runs, LABEL_REGRESSIONS);

// ---- DSO volume options

const OPTION_KEYS = ["secrets", "uid", "gid", "mode", "strategy", "signal", "secret", "Secrets", "sec", "o", "", " secrets", "size", "type", "device"];
export const volumeOptions = fc.dictionary(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...OPTION_KEYS) }, fc.string({ unit: "binary", maxLength: 10 }), fc.integer({ min: 100, max: 3000 }).map((n) => "k".repeat(n))), hostileText, {
  maxKeys: 6,
});
export const OPTION_REGRESSIONS: Record<string, string>[] = [
  // An unknown key was echoed whole (3,000 characters) and unescaped into the Err dockerd prints.
  { ["k".repeat(3000)]: "x" },
  { "\u0004\u0012": "x" },
];
export const fuzzVolumeOptions = (runs: number) => inWorker("volumeOptions", volumeOptions, runs, OPTION_REGRESSIONS);

// ---- secret names and file names

const namePart = fc.oneof(
  fc.constantFrom("..", ".", "", "..data", "..data_tmp", "..dso_", "..dso_version", "..dso_1_2_3", "...", ". .", "\u0000", "/", "\\", "~", "a", "é", "\u202e", "\ud800", "\u2025", "\uff0e\uff0e"),
  fc.string({ unit: "binary", maxLength: 8 }),
);
export const nameCase: fc.Arbitrary<NameCase> = fc.record({
  name: fc.oneof(
    fc.array(namePart, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("")),
    fc.array(namePart, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/")),
    fc.integer({ min: 200, max: 400 }).chain((n) => fc.constantFrom("a", "é", "\u{1F511}").map((c) => c.repeat(n))),
    fc.string({ unit: "binary", maxLength: 40 }),
  ),
  target: fc.oneof(
    fc.constantFrom("/run/secrets", "/", "//", "/run//secrets/", "/run/./secrets", "/run/../etc", "run/secrets", "/run/\u007f", "/run/\u0000", "/..data", "/run/secrets/.."),
    fc.array(namePart, { maxLength: 4 }).map((parts) => `/${parts.join("/")}`),
  ),
});
export const NAME_REGRESSIONS: NameCase[] = [
  // Lone surrogates: written to disk as U+FFFD, so two accepted names could be one file.
  { name: "\ud800", target: "/run/secrets" },
  { name: "x", target: "/\ud800" },
];
export const fuzzNames = (runs: number) => inWorker("names", nameCase, runs, NAME_REGRESSIONS);
