/**
 * The properties of the synchronous hostile-input targets, one function per target: input in,
 * Verdict out. They run in a worker thread (worker.ts), so a case that never returns is a hang
 * the runner can end. A crash is any exception the code under test lets out that is not the
 * typed refusal it promises.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { ConfigError, loadConfig, parseConfig } from "../../src/config/index.ts";
import type { DsoConfig } from "../../src/config/types.ts";
import { DsoError } from "../../src/errors.ts";
import { assertValidName, normaliseTargetPath } from "../../src/delivery/file-names.ts";
import { DATA_LINK, DATA_LINK_TMP, VERSION_MARKER, isVersionName } from "../../src/delivery/layout.ts";
import { secretNamesOf, validateDriverOptions } from "../../src/delivery/plugin/driver-options.ts";
import { buildDeliveries } from "../../src/reloader/files.ts";
import { ownLabels } from "../../src/reloader/labels.ts";
import { selectContainer } from "../../src/reloader/selection.ts";
import { fileNameProblem, isFileMode, isOwnerId, MAX_NAME_BYTES } from "../../src/util/file-rules.ts";
import { type Verdict, OK, crash, violation } from "../support/fuzz.ts";
import { type ConfigCase, FUZZ_ENV, configSeeds, materialise, rewrite, type RewriteCase } from "./config-cases.ts";

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for.
const CONTROL = /[\u0000-\u001f\u007f]/;
/** A message a person reads on one terminal line: no line breaks or control characters, bounded. */
const MAX_MESSAGE_CHARS = 600;

function oneLineProblem(message: string): string | undefined {
  if (message.trim() === "") return "is empty";
  if (CONTROL.test(message)) return `holds a control character: ${JSON.stringify(message.slice(0, 200))}`;
  if (message.length > MAX_MESSAGE_CHARS) return `is ${message.length} characters long: ${JSON.stringify(message.slice(0, 120))}…`;
  return undefined;
}

let scratch: string | undefined;

/** `dso config validate`'s own path: loadConfig reads the file (Bun.file().text()) and parses it. */
async function validateBytes(bytes: Uint8Array): Promise<{ config?: DsoConfig; error?: unknown }> {
  scratch ??= mkdtempSync(join(tmpdir(), "dso-fuzz-config-"));
  const path = join(scratch, "dso.yaml");
  writeFileSync(path, bytes);
  try {
    return { config: (await loadConfig(path, FUZZ_ENV)).config };
  } catch (error) {
    return { error };
  }
}

export function cleanupScratch(): void {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

function configErrorProblem(error: ConfigError): string | undefined {
  if (error.issues.length === 0) return "ConfigError without issues";
  for (const issue of error.issues) {
    if (!Number.isInteger(issue.line) || issue.line < 1) return `issue without a line: ${JSON.stringify(issue).slice(0, 300)}`;
    const problem = oneLineProblem(issue.message);
    if (problem) return `issue message at ${issue.file}:${issue.line} (${JSON.stringify(issue.path.slice(0, 80))}) ${problem}`;
    if (issue.path.length > MAX_MESSAGE_CHARS || CONTROL.test(issue.path)) return `issue path ${JSON.stringify(issue.path.slice(0, 120))} is not printable on one line`;
  }
  return undefined;
}

/** 1: a mutated dso.yaml gives a config or a ConfigError whose every issue is one line with a line number. */
export async function checkConfig(c: ConfigCase): Promise<Verdict> {
  const { error } = await validateBytes(materialise(c));
  if (error === undefined) return OK;
  if (error instanceof ConfigError) {
    const problem = configErrorProblem(error);
    return problem ? violation(problem) : OK;
  }
  if (error instanceof DsoError) return violation(`a ${error.code} DsoError, not a ConfigError: ${error.message.slice(0, 200)}`);
  return crash(error);
}

/** 1b: a valid seed stays valid, with the same meaning, under rewrites that change no meaning. */
export function checkConfigRewrite(c: RewriteCase): Verdict {
  const seeds = configSeeds();
  const text = seeds[c.seed % seeds.length]!;
  let before: DsoConfig;
  try {
    before = parseConfig(text, "dso.yaml", FUZZ_ENV).config;
  } catch {
    return OK; // an invalid seed (many-errors.yaml) has no meaning to keep
  }
  const after = rewrite(text, c.rewrites, c.shuffle);
  try {
    const config = parseConfig(after, "dso.yaml", FUZZ_ENV).config;
    const [a, b] = [stable(before), stable(config)];
    return a === b ? OK : violation(`the rewritten file means something else:\nbefore ${a}\nafter  ${b}\ntext:\n${after.slice(0, 1500)}`);
  } catch (error) {
    if (error instanceof ConfigError) return violation(`the rewritten file is refused: ${error.message.slice(0, 400)}\ntext:\n${after.slice(0, 1500)}`);
    return crash(error);
  }
}

function stable(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
}

const LABEL_CONFIG = parseConfig(
  "providers:\n  files:\n    type: file\n    config: { path: /tmp/dso-fuzz-none }\nsecrets:\n  - name: app/db\n    mappings: { user: db_user }\n",
  "dso.yaml",
  {},
).config;

export interface LabelCase {
  labels: Record<string, string>;
  image: Record<string, string>;
  /** Keys of the JSON value the selected secrets would have (for the file names they give). */
  valueKeys: string[];
}

/** 2: any label map → a selection or warnings; never a throw; a selection holds only deliverable settings. */
export function checkLabels(c: LabelCase): Verdict {
  try {
    const own = ownLabels(c.labels, c.image);
    for (const key of own.dropped) if (!key.startsWith("dso.") || c.image[key] !== c.labels[key]) return violation(`dropped ${key}, which the image did not set`);
    const outcome = selectContainer({ id: "f".repeat(64), name: "fuzz", labels: own.labels }, LABEL_CONFIG);
    for (const warning of outcome.warnings) {
      const problem = oneLineProblem(warning);
      if (problem) return violation(`warning ${problem}`);
    }
    if (!outcome.selected) return OK;
    const { files } = outcome.selection;
    if (files.path !== undefined) {
      try {
        normaliseTargetPath(files.path);
      } catch (error) {
        if (!(error instanceof DsoError)) return crash(error);
        return violation(`label dso.inject.path=${JSON.stringify(files.path.slice(0, 80))} was accepted, but delivery refuses it: ${error.message}`);
      }
    }
    if (files.mode !== undefined && !isFileMode(files.mode)) return violation(`accepted mode ${files.mode}`);
    for (const id of [files.uid, files.gid]) if (id !== undefined && !isOwnerId(id)) return violation(`accepted id ${id}`);
    // The files a fetched value would become: every name either passes delivery's check or is refused with a DsoError.
    const keys = c.valueKeys.length ? c.valueKeys : ["value"];
    const fetched = new Map(outcome.selection.secrets.map((s) => [s.name, { fingerprint: "f", value: new Map(keys.map((k) => [k, Uint8Array.of(1)])) }]));
    const built = buildDeliveries(outcome.selection, fetched);
    for (const group of built.groups) {
      for (const file of group.files) {
        try {
          assertValidName(file.name);
        } catch (error) {
          if (!(error instanceof DsoError)) return crash(error);
          const problem = oneLineProblem(error.message);
          if (problem) return violation(`delivery's refusal ${problem}`);
        }
      }
    }
    return OK;
  } catch (error) {
    return crash(error);
  }
}

/** 3: any option map → accepted options that are all deliverable, or one BAD_REQUEST line naming the option. */
export function checkVolumeOptions(opts: Record<string, string>): Verdict {
  let names: string[];
  try {
    names = secretNamesOf(opts);
  } catch (error) {
    return crash(error);
  }
  try {
    const parsed = validateDriverOptions(opts);
    if (parsed.secrets.length === 0) return violation("accepted without a secret");
    if (new Set(parsed.secrets).size !== parsed.secrets.length) return violation("accepted a name twice");
    if (parsed.secrets.some((n) => n === "" || n !== n.trim())) return violation("accepted an empty or untrimmed name");
    if (!isOwnerId(parsed.uid) || !isOwnerId(parsed.gid) || !isFileMode(parsed.mode)) return violation(`accepted uid ${parsed.uid} gid ${parsed.gid} mode ${parsed.mode}`);
    if (JSON.stringify(names) !== JSON.stringify(parsed.secrets)) return violation("secretNamesOf differs from validateDriverOptions");
    return OK;
  } catch (error) {
    if (!(error instanceof DsoError)) return crash(error);
    if (error.code !== "BAD_REQUEST") return violation(`code ${error.code}`);
    const problem = oneLineProblem(error.message);
    if (problem) return violation(`refusal ${problem}`);
    // The option at fault: one that was given, or the required secrets= when it names none.
    const named = [...Object.keys(opts), "secrets"].some((key) => error.message.includes(`option ${key.slice(0, 64)}`) || error.message.includes(`option ${JSON.stringify(key).slice(0, 60)}`));
    if (!named) return violation(`refusal names no option: ${error.message}`);
    return OK;
  }
}

const LAYOUT_NAMES = new Set([DATA_LINK, DATA_LINK_TMP, VERSION_MARKER]);

export interface NameCase {
  name: string;
  target: string;
}

/**
 * 4: any file name the rules accept, joined under any target directory the rules accept and
 * normalised, stays directly inside that directory and is none of the atomic layout's names.
 */
export function checkNames(c: NameCase): Verdict {
  try {
    const problem = fileNameProblem(c.name);
    let refusedByDelivery = false;
    try {
      assertValidName(c.name);
    } catch (error) {
      if (!(error instanceof DsoError)) return crash(error);
      refusedByDelivery = true;
      const text = oneLineProblem(error.message);
      if (text) return violation(`refusal ${text}`);
    }
    if (refusedByDelivery !== (problem !== undefined)) return violation("assertValidName and fileNameProblem disagree");
    let target: string | undefined;
    try {
      target = normaliseTargetPath(c.target);
    } catch (error) {
      if (!(error instanceof DsoError)) return crash(error);
    }
    if (target !== undefined) {
      if (!target.startsWith("/") || target === "/" || posix.normalize(target) !== target || target.endsWith("/") || CONTROL.test(target))
        return violation(`target ${JSON.stringify(c.target)} normalised to ${JSON.stringify(target)}`);
    }
    if (problem !== undefined) return OK;
    if (LAYOUT_NAMES.has(c.name) || isVersionName(c.name)) return violation(`accepted the layout name ${JSON.stringify(c.name)}`);
    if (c.name.includes("\u0000") || Buffer.byteLength(c.name) > MAX_NAME_BYTES) return violation("accepted NUL or an over-long name");
    const dir = target ?? "/run/secrets";
    const joined = posix.normalize(posix.join(dir, c.name));
    if (posix.dirname(joined) !== dir || posix.basename(joined) !== c.name) return violation(`${JSON.stringify(c.name)} under ${dir} resolves to ${JSON.stringify(joined)}`);
    return OK;
  } catch (error) {
    return crash(error);
  }
}

export const CHECKS: Record<string, (input: never) => Verdict | Promise<Verdict>> = {
  config: checkConfig,
  configRewrite: checkConfigRewrite,
  labels: checkLabels,
  volumeOptions: checkVolumeOptions,
  names: checkNames,
};
