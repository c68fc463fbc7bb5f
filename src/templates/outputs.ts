/**
 * The one pure step from values to outputs: `renderOutputs(outputs, values)` gives each output's
 * bytes, for every delivery path (files of labelled containers in every mode, DSO volumes, Swarm
 * secrets, variables of env injection, `dso inject`) through reloader/files.ts. Parsed templates are
 * cached per output spec. `outputsDigest` keys an output's version over its text and options, so a
 * template change is a new version as much as a source change is.
 */
import { createHash } from "node:crypto";
import { TemplateError } from "./errors.ts";
import { formatSegments, type SecretMap } from "./formats.ts";
import { parseTemplate, type ParsedTemplate } from "./parse.ts";
import { renderTemplate } from "./render.ts";
import { writeSegments, MAX_OUTPUT_BYTES } from "./segments.ts";
import type { OutputSpec } from "./types.ts";

export type { OutputSpec };

const parsed = new WeakMap<OutputSpec, ParsedTemplate>();

/** The parsed template of an output (throws TemplateError); formats have none. */
export function compileOutput(output: OutputSpec): ParsedTemplate | undefined {
  if (output.content.kind !== "template") return undefined;
  const known = parsed.get(output);
  if (known) return known;
  const [left, right] = output.content.delimiters ?? ["{{", "}}"];
  const template = parseTemplate(output.content.text, { ...output.content.origin, output: output.name }, { left, right });
  parsed.set(output, template);
  return template;
}

/**
 * One output's bytes, in a new owned buffer of exactly its size (the caller ties it to the values'
 * window, which wipes it). Throws TemplateError naming file:line and the key; never a value.
 */
export function renderOutput(output: OutputSpec, values: ReadonlyMap<string, SecretMap>): Uint8Array {
  const owner = output.sources[0]!;
  const root = values.get(owner);
  const origin = output.content.kind === "template" ? { ...output.content.origin, output: output.name } : { file: "dso.yaml", line: 1, output: output.name };
  if (!root) throw new TemplateError(origin, 1, `secret "${owner}" has no value here`);
  if (output.content.kind === "format") {
    const segments = formatSegments(output.content.format, root, true);
    if (typeof segments === "string") throw new TemplateError(origin, 1, `format ${output.content.format}: ${segments} of secret "${owner}"`);
    const bytes = writeSegments(segments);
    if (!bytes) throw new TemplateError(origin, 1, `the output is larger than ${MAX_OUTPUT_BYTES} bytes`);
    return bytes;
  }
  const visible = new Map<string, SecretMap>();
  for (const name of output.sources) {
    const map = values.get(name);
    if (!map) throw new TemplateError(origin, 1, `reads secret "${name}", which is not delivered to this target with "${owner}"; name it there too`);
    visible.set(name, map);
  }
  return renderTemplate(compileOutput(output)!, { root: { name: owner, map: root }, secrets: visible });
}

/** A digest of a secret's outputs (names, texts, formats, options): part of its version marker. */
export function outputsDigest(outputs: readonly OutputSpec[]): string | undefined {
  if (outputs.length === 0) return undefined;
  const canonical = outputs.map((o) => [o.name, o.content.kind === "template" ? ["t", o.content.text, o.content.delimiters ?? null] : ["f", o.content.format], o.sources, o.mode ?? null, o.uid ?? null, o.gid ?? null]);
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex").slice(0, 32);
}

/** Outputs (as `dso plan` and `dso ls` list them): each output's name, the secret it is delivered with, and every secret it reads. */
export interface OutputView {
  name: string;
  secret: string;
  sources: string[];
  /** "template" or the format's name. */
  kind: string;
}

export function outputViews(specs: Iterable<{ name: string; outputs?: readonly OutputSpec[] }>, reading?: string): OutputView[] {
  const views: OutputView[] = [];
  for (const spec of specs) {
    for (const o of spec.outputs ?? []) {
      if (reading !== undefined && !o.sources.includes(reading)) continue;
      views.push({ name: o.name, secret: spec.name, sources: [...o.sources], kind: o.content.kind === "template" ? "template" : o.content.format });
    }
  }
  return views;
}
