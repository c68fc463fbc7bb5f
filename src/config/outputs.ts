/**
 * Resolves `templates:` (per secret, and top-level ones reading several secrets) into OutputSpecs:
 * exactly one of file/env matching the secret's inject type, exactly one of template /
 * template_file / format, a template file read relative to dso.yaml, and every template parsed
 * here, so `dso config validate` and the agent's start report a bad template at file:line.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { TemplateError } from "../templates/errors.ts";
import { compileOutput, outputsDigest } from "../templates/outputs.ts";
import type { OutputSpec } from "../templates/types.ts";
import { fileNameProblem } from "../util/file-rules.ts";
import type { IssueCollector } from "./collect.ts";
import type { TreePath } from "./env-expand.ts";
import type { OutputInput } from "./schema.ts";
import type { SecretSpec } from "./types.ts";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Template text is never `${VAR}`-expanded (it is passed to env-expand's skip). */
export function isTemplateTextPath(path: TreePath): boolean {
  const last = path.at(-1);
  if (last !== "template") return false;
  return (path.length === 3 && path[0] === "templates") || (path.length === 5 && path[0] === "secrets" && path[2] === "templates");
}

function resolveOne(input: OutputInput, path: TreePath, owner: SecretSpec, sources: string[], issues: IssueCollector): OutputSpec | undefined {
  const kind = owner.inject.type;
  const name = kind === "env" ? input.env : input.file;
  const wrong = kind === "env" ? input.file : input.env;
  if (wrong !== undefined) issues.error([...path, kind === "env" ? "file" : "env"], `secret "${owner.name}" is injected as ${kind}: name the output with ${kind === "env" ? "env:" : "file:"}`);
  if (name === undefined) {
    issues.error(path, `needs ${kind === "env" ? "env: <variable name>" : "file: <file name>"}`);
    return undefined;
  }
  const nameProblem = kind === "env" ? (ENV_NAME.test(name) ? undefined : "must be a variable name (letters, digits, _)") : fileNameProblem(name);
  if (nameProblem) issues.error([...path, kind === "env" ? "env" : "file"], nameProblem);
  const given = [input.template !== undefined, input.template_file !== undefined, input.format !== undefined].filter(Boolean).length;
  if (given !== 1) {
    issues.error(path, "needs exactly one of template, template_file or format");
    return undefined;
  }
  if (input.format !== undefined && input.delimiters) issues.warn([...path, "delimiters"], "ignored for a format");
  const options = { ...(input.mode === undefined ? {} : { mode: input.mode }), ...(input.uid === undefined ? {} : { uid: input.uid }), ...(input.gid === undefined ? {} : { gid: input.gid }) };
  if (input.format !== undefined) return { name, content: { kind: "format", format: input.format }, sources, ...options };
  let text = input.template;
  let origin = { file: issues.file, line: issues.index?.lineOf([...path, "template"]) ?? 1 };
  // A block scalar (`template: |`) starts on the line after its key.
  if (text !== undefined && text.includes("\n")) origin = { ...origin, line: origin.line + 1 };
  if (input.template_file !== undefined) {
    const file = isAbsolute(input.template_file) ? input.template_file : resolve(dirname(issues.file), input.template_file);
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      issues.error([...path, "template_file"], `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
      return undefined;
    }
    origin = { file, line: 1 };
  }
  const output: OutputSpec = { name, content: { kind: "template", text: text!, ...(input.delimiters ? { delimiters: input.delimiters } : {}), origin }, sources, ...options };
  try {
    compileOutput(output);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    const where = input.template_file !== undefined ? "template_file" : "template";
    if (origin.file === issues.file) issues.error([...path, where], error.problem, error.line);
    else issues.error([...path, where], `${origin.file}:${error.line}: ${error.problem}`);
    return undefined;
  }
  return output;
}

/** A secret's own `templates:`. */
export function resolveSecretOutputs(spec: SecretSpec, inputs: readonly OutputInput[] | undefined, index: number, issues: IssueCollector): void {
  if (!inputs?.length) return;
  if (Object.keys(spec.mappings).length > 0) issues.error(["secrets", index, "templates"], "cannot be combined with mappings: a template names the keys it reads");
  const outputs = inputs.map((input, i) => resolveOne(input, ["secrets", index, "templates", i], spec, [spec.name], issues)).filter((o) => o !== undefined);
  spec.outputs = [...(spec.outputs ?? []), ...outputs];
}

/** Top-level `templates:` with `secrets: [a, b]`: each is delivered with its first secret, wherever that goes. */
export function resolveSharedOutputs(specs: readonly SecretSpec[], inputs: readonly OutputInput[] | undefined, issues: IssueCollector): void {
  (inputs ?? []).forEach((input, i) => {
    const path = ["templates", i];
    const sources = input.secrets ?? [];
    const missing = sources.filter((name) => !specs.some((s) => s.name === name));
    if (missing.length) return issues.error([...path, "secrets"], `names secret(s) not in secrets[]: ${missing.map((m) => `"${m}"`).join(", ")}`);
    const owner = specs.find((s) => s.name === sources[0])!;
    const output = resolveOne(input, path, owner, [...new Set(sources)], issues);
    if (output) owner.outputs = [...(owner.outputs ?? []), output];
  });
}

/** Duplicate output names of a secret, and each secret's outputs digest. */
export function finishOutputs(specs: SecretSpec[], issues: IssueCollector): void {
  specs.forEach((spec, index) => {
    if (!spec.outputs?.length) return;
    const seen = new Set<string>();
    for (const o of spec.outputs) {
      if (seen.has(o.name)) issues.error(["secrets", index, "templates"], `two outputs of secret "${spec.name}" are named "${o.name}"`);
      seen.add(o.name);
    }
    spec.outputsDigest = outputsDigest(spec.outputs);
  });
}
