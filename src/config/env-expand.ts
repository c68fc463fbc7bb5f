/**
 * `${VAR}` and `${VAR:-default}` in dso.yaml string values, expanded after YAML parsing so a
 * variable's content is always one string and can never add YAML structure. `$${` writes a
 * literal `${`. Messages name the variable, never its value.
 */
import { printable } from "../util/printable.ts";

export type Env = Record<string, string | undefined>;
export type TreePath = (string | number)[];

export interface ExpansionProblem {
  path: TreePath;
  message: string;
}

export interface ExpansionResult {
  value: unknown;
  problems: ExpansionProblem[];
  /** Dotted paths of strings that were changed by expansion: their content must not be echoed. */
  expanded: Set<string>;
}

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

function expandString(text: string, env: Env): { text: string; changed: boolean; problems: string[] } {
  if (!text.includes("$")) return { text, changed: false, problems: [] };
  let out = "";
  let changed = false;
  const problems: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text.startsWith("$${", i)) {
      out += "${";
      i += 3;
      changed = true;
      continue;
    }
    if (!text.startsWith("${", i)) {
      out += text[i];
      i++;
      continue;
    }
    const close = text.indexOf("}", i + 2);
    if (close < 0) {
      problems.push('unterminated "${": close it with "}" or write "$${" for a literal "${"');
      break;
    }
    const inner = text.slice(i + 2, close);
    const sep = inner.indexOf(":-");
    const name = sep < 0 ? inner : inner.slice(0, sep);
    const fallback = sep < 0 ? undefined : inner.slice(sep + 2);
    changed = true;
    i = close + 1;
    if (!NAME_PATTERN.test(name)) {
      problems.push(`invalid variable reference ${printable(`\${${name}}`)}: names are letters, digits and _`);
      continue;
    }
    const value = env[name];
    if (value !== undefined && (value !== "" || fallback === undefined)) out += value;
    else if (fallback !== undefined) out += fallback;
    else problems.push(`environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
  }
  return { text: out, changed, problems };
}

/**
 * Returns a copy of `tree` with every string value expanded. Mapping keys are left alone;
 * `skip(path)` prunes subtrees that are never used (ignored legacy keys).
 */
export function expandEnvInTree(tree: unknown, env: Env, skip: (path: TreePath) => boolean): ExpansionResult {
  const problems: ExpansionProblem[] = [];
  const expanded = new Set<string>();
  const walk = (node: unknown, path: TreePath): unknown => {
    if (path.length > 0 && skip(path)) return node;
    if (typeof node === "string") {
      const result = expandString(node, env);
      for (const message of result.problems) problems.push({ path, message });
      if (result.changed) expanded.add(path.join("."));
      return result.text;
    }
    if (Array.isArray(node)) return node.map((item, index) => walk(item, [...path, index]));
    if (node !== null && typeof node === "object") {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(node)) out[key] = walk(value, [...path, key]);
      return out;
    }
    return node;
  };
  return { value: walk(tree, []), problems, expanded };
}
