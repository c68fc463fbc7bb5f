/** A YAML/JSON mapping (a plain object), not null, not a list. */
export function isMapping(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}
