/**
 * Gathers errors and warnings while a file is checked, turning dotted paths into lines and
 * valibot issues into short messages. Decides when an offending value may be quoted back:
 * never when it came from `${VAR}` expansion or sits under a key that usually holds
 * credentials.
 */
import type * as v from "valibot";
import { describeKind } from "./schema.ts";
import type { TreePath } from "./env-expand.ts";
import type { ConfigIssue } from "./issues.ts";
import type { YamlLineIndex } from "./yaml-lines.ts";
import { printable } from "../util/printable.ts";

export { describeKind };

/** Passed as valibot's config message, so issues without a schema-specific message are recognisable. */
export const FALLBACK_MESSAGE = "\u0000";

const MAX_SHOWN_LENGTH = 80;
const MAX_SUGGESTION_DISTANCE = 2;
/** Issue types whose message describes a value the user wrote, so quoting it helps. */
const VALUE_ISSUE_TYPES = new Set(["picklist", "raw_transform", "check", "regex"]);

type AnySchema = v.GenericSchema & Record<string, unknown>;

export class IssueCollector {
  readonly errors: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  expanded = new Set<string>();
  index: YamlLineIndex | undefined;

  constructor(readonly file: string) {}

  private issue(path: TreePath, message: string, line?: number): ConfigIssue {
    return { file: this.file, line: line ?? this.index?.lineOf(path) ?? 1, path: printablePath(path), message };
  }

  /** `line` overrides the line found for `path` (a duplicate key has the path of the first one). */
  error(path: TreePath, message: string, line?: number): void {
    this.errors.push(this.issue(path, message, line));
  }

  warn(path: TreePath, message: string): void {
    this.warnings.push(this.issue(path, message));
  }

  /** ` (got "x")` when the value at `path` may be shown, else "". */
  got(value: unknown, path: TreePath): string {
    const shown = this.show(value, path);
    return shown === undefined ? "" : ` (got ${shown})`;
  }

  /** `"x"` when the value at `path` may be shown, else undefined. */
  show(value: unknown, path: TreePath): string | undefined {
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return undefined;
    const text = String(value);
    if (text.length > MAX_SHOWN_LENGTH || /[\u0000-\u001f\u007f]/.test(text)) return undefined;
    if (this.expanded.has(path.join("."))) return undefined;
    if (mayHoldCredentials(path)) return undefined;
    return JSON.stringify(text);
  }

  /** Records each valibot issue under `prefix` (the section's path in the document). */
  addValibotIssues(prefix: TreePath, schema: v.GenericSchema, issues: readonly v.BaseIssue<unknown>[]): void {
    for (const issue of issues) {
      const rel = (issue.path ?? []).map((item) => item.key as string | number);
      const path = [...prefix, ...rel];
      if (issue.message !== FALLBACK_MESSAGE) {
        const suffix = VALUE_ISSUE_TYPES.has(issue.type) ? this.got(issue.input, path) : "";
        this.error(path, issue.message + suffix);
        continue;
      }
      if (isUnknownKey(issue)) {
        this.addUnknownKeys(prefix, schema, issue, rel);
        continue;
      }
      this.error(path, this.describe(issue, rel));
    }
  }

  /**
   * valibot's strictObject stops at the first unknown key of a mapping; the mapping itself is on
   * the issue, so every other unknown key in it is reported here too, each at its own line.
   */
  private addUnknownKeys(prefix: TreePath, schema: v.GenericSchema, issue: v.BaseIssue<unknown>, rel: (string | number)[]): void {
    const parent = rel.slice(0, -1);
    const known = knownKeysAt(schema, parent);
    const first = String(rel.at(-1));
    const mapping = issue.path?.at(-1)?.input;
    const others = known.length > 0 && isPlainMapping(mapping) ? Object.keys(mapping).filter((key) => key !== first && !known.includes(key)) : [];
    for (const key of [first, ...others]) {
      const suggestion = suggestKey(key, known);
      this.error([...prefix, ...parent, key], suggestion ? `unknown key ${printable(key)} (did you mean "${suggestion}"?)` : `unknown key ${printable(key)}`);
    }
  }

  private describe(issue: v.BaseIssue<unknown>, rel: (string | number)[]): string {
    const isObject = issue.type === "strict_object" || issue.type === "object";
    if (isObject && issue.received === "undefined" && rel.length > 0 && issue.input === undefined) return "is required";
    return `must be ${nounFor(issue.expected)}, not ${describeKind(issue.input)}`;
  }
}

function isUnknownKey(issue: v.BaseIssue<unknown>): boolean {
  return (issue.type === "strict_object" || issue.type === "object") && issue.expected === "never";
}

function isPlainMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for.
const UNPRINTABLE_KEY = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** The dotted path of an issue; a key that holds control characters or is very long is quoted (util/printable.ts). */
function printablePath(path: TreePath): string {
  return path.map((seg) => (typeof seg === "string" && (UNPRINTABLE_KEY.test(seg) || seg.length > MAX_SHOWN_LENGTH) ? printable(seg) : seg)).join(".");
}

/** Provider settings and auth (tokens, client secrets), the webhook token, notification URLs and headers: never quoted back. */
function mayHoldCredentials(path: TreePath): boolean {
  const [first, second, third] = path;
  if (first === "config") return true;
  if (first === "notifications" && second === "webhooks") return true;
  if (first === "providers" && (third === "config" || third === "auth")) return true;
  return path.at(-1) === "auth_token";
}

function nounFor(expected: string | null): string {
  switch (expected) {
    case "Object":
      return "a mapping (key: value lines)";
    case "Array":
      return "a list (- item lines)";
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return "true or false";
    default:
      return expected ? `${expected}` : "something else";
  }
}

/** The keys a strict object schema accepts at a path inside `schema` (for "did you mean"). */
function knownKeysAt(schema: v.GenericSchema, rel: (string | number)[]): string[] {
  let node: AnySchema | undefined = schema as AnySchema;
  const unwrap = () => {
    while (node) {
      if (node.wrapped) node = node.wrapped as AnySchema;
      else if (Array.isArray(node.pipe) && node.pipe[0] !== node) node = node.pipe[0] as AnySchema;
      else break;
    }
  };
  for (const seg of rel) {
    unwrap();
    if (!node) return [];
    if (node.entries) node = (node.entries as Record<string, AnySchema>)[String(seg)];
    else if (node.item) node = node.item as AnySchema;
    else if (node.value) node = node.value as AnySchema;
    else return [];
  }
  unwrap();
  return node?.entries ? Object.keys(node.entries as object) : [];
}

export function suggestKey(key: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(key.toLowerCase(), name);
    if (distance <= MAX_SUGGESTION_DISTANCE && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
