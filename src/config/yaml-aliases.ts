/**
 * YAML aliases (`*name`) make Bun.YAML return shared objects, and a self-referencing anchor
 * (`a: &a [*a]`) a cyclic one. Everything after parsing walks the document as a tree, so a
 * cycle never ends and a small "billion laughs" file (seven levels of nine aliases: 300 bytes)
 * expands to millions of nodes — seconds of CPU and hundreds of MB. Both are refused before the
 * walk. Subtree sizes are memoised per shared object, so the check is linear in the file; only
 * what aliases add counts against the limit, never values written out.
 */
import { isMapping } from "../util/is-mapping.ts";

/** Values that YAML aliases may add to a document: real files use a handful. */
export const MAX_ALIAS_EXPANSION = 100_000;

export type AliasProblem = { path: (string | number)[]; message: string };

function childrenOf(node: unknown): [string | number, unknown][] {
  if (Array.isArray(node)) return node.map((child, i) => [i, child]);
  if (isMapping(node)) return Object.entries(node);
  return [];
}

/** A cycle, or more than MAX_ALIAS_EXPANSION values added by aliases, with the path where it shows. */
export function aliasProblem(doc: unknown): AliasProblem | undefined {
  const sizes = new Map<object, number>();
  const onPath = new Set<object>();
  let written = 0;
  let expanded = 0;
  let cycleAt: (string | number)[] | undefined;
  const sizeOf = (node: unknown, path: (string | number)[]): number => {
    if (node === null || typeof node !== "object") return 1;
    const known = sizes.get(node);
    if (known !== undefined) return known;
    if (onPath.has(node)) {
      cycleAt ??= path;
      return 0;
    }
    onPath.add(node);
    let total = 1;
    written++;
    for (const [key, child] of childrenOf(node)) {
      if (child === null || typeof child !== "object") written++;
      total += sizeOf(child, [...path, key]);
      if (cycleAt || total - written > MAX_ALIAS_EXPANSION) break;
    }
    onPath.delete(node);
    sizes.set(node, total);
    return total;
  };
  for (const [key, child] of childrenOf(doc)) {
    expanded += sizeOf(child, [key]);
    if (cycleAt) return { path: cycleAt, message: "a YAML alias here refers to a value that contains it (a cycle); write the value out instead" };
    if (expanded - written > MAX_ALIAS_EXPANSION) {
      return { path: [key], message: `YAML aliases expand this to more than ${MAX_ALIAS_EXPANSION} values; write the values out instead` };
    }
  }
  return undefined;
}
