/**
 * The one rule by which a secret stored as a string (Azure Key Vault, Secret Manager) that holds a
 * JSON object is delivered as one file per member: a member that is not a string is written as its
 * JSON text. Anything else (not JSON, not an object, an empty object) is one value, `value`.
 */
import { isMapping } from "../src/util/is-mapping.ts";

/** The members of a JSON object as key → text, or undefined when `text` is not a non-empty object. */
export function jsonObjectKeys(text: string): Record<string, string> | undefined {
  if (!text.trimStart().startsWith("{")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const entries = isMapping(parsed) ? Object.entries(parsed) : [];
  if (entries.length === 0) return undefined;
  return Object.fromEntries(entries.map(([key, value]) => [key, typeof value === "string" ? value : JSON.stringify(value)]));
}
