/**
 * Rewrites the Go DSO's v1 shorthand inside each secret into the v2 shape, keeping paths:
 * `inject: env` becomes `inject: {type: env}` and `rotation: true` becomes
 * `rotation: {enabled: true}`. Top-level v1 keys (`provider:`, `config:`, `region:`) are kept
 * and turned into a provider in resolve.ts, so their errors still point at their own lines.
 */
import type { IssueCollector } from "./collect.ts";
import { INJECT_TYPES } from "./schema.ts";
import { isMapping } from "../util/is-mapping.ts";


/**
 * Modes are octal, as for chmod, quoted or not. Bun.YAML follows YAML 1.2, where `mode: 0400`
 * is the decimal number 400 (the Go DSO's YAML 1.1 reader made it octal), so numbers are
 * re-read from the source text and handed to the schema as the digits the user wrote.
 */
function readModeAsWritten(inject: unknown, path: (string | number)[], issues: IssueCollector): unknown {
  if (!isMapping(inject) || typeof inject.mode !== "number") return inject;
  const raw = issues.index?.rawValueOf([...path, "mode"]);
  return { ...inject, mode: raw ?? String(inject.mode) };
}

/** Applies readModeAsWritten to defaults.inject and every secret's inject. */
export function rewriteOctalModes(doc: Record<string, unknown>, issues: IssueCollector): Record<string, unknown> {
  const out = { ...doc };
  if (isMapping(out.defaults)) {
    out.defaults = { ...out.defaults, inject: readModeAsWritten(out.defaults.inject, ["defaults", "inject"], issues) };
  }
  if (Array.isArray(out.secrets)) {
    out.secrets = out.secrets.map((secret, index) =>
      isMapping(secret) && "inject" in secret
        ? { ...secret, inject: readModeAsWritten(secret.inject, ["secrets", index, "inject"], issues) }
        : secret,
    );
  }
  return out;
}

export function rewriteLegacySecretShapes(doc: Record<string, unknown>, issues: IssueCollector): Record<string, unknown> {
  if (!Array.isArray(doc.secrets)) return doc;
  const secrets = doc.secrets.map((secret, index) => {
    if (!isMapping(secret)) return secret;
    const out = { ...secret };
    if (typeof out.inject === "string") {
      if ((INJECT_TYPES as readonly string[]).includes(out.inject)) out.inject = { type: out.inject };
      else {
        const path = ["secrets", index, "inject"];
        issues.error(path, `must be a mapping or one of ${INJECT_TYPES.join(", ")}${issues.got(out.inject, path)}`);
        delete out.inject;
      }
    }
    if (typeof out.rotation === "boolean") out.rotation = { enabled: out.rotation };
    return out;
  });
  return { ...doc, secrets };
}
