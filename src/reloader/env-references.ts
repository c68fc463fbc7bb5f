/**
 * The `dso.env` label that `dso up` puts on a service whose compose environment holds
 * `VAR: dso://<secret>[#key]` references: `VAR=<secret>[#key]`, comma separated. Each entry is an
 * env-injection spec of its own (the secret's dso.yaml entry, or the implicit one a single
 * provider gives, with `inject: env` and the one mapping `<key>: VAR`), so the variable the
 * compose file names receives the value, whatever dso.yaml maps. A secret that dso.yaml does not
 * allow is refused the same way a `dso.secrets` label naming it is.
 */
import type { DsoConfig, SecretSpec } from "../config/types.ts";
import { printable } from "../util/printable.ts";
import { askedNameProblem, MAX_LABEL_SECRETS } from "./selection.ts";

/** Written by `dso up` (src/cli/compose/override.ts, which names it too: the CLI may not import the reloader). */
export const ENV_REFERENCES_LABEL = "dso.env";
/** The key a plain (not JSON) secret's value has inside DSO (reloader/files.ts). */
const PLAIN_VALUE_KEY = "value";
const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface EnvReference {
  variable: string;
  secret: string;
  key?: string;
}

/** `VAR=secret#key,VAR2=secret2`; entries that do not parse are reported, never guessed. */
export function parseEnvReferences(raw: string | undefined, problems: string[]): EnvReference[] {
  if (raw === undefined) return [];
  const entries = raw.split(",").map((e) => e.trim()).filter(Boolean);
  if (entries.length > MAX_LABEL_SECRETS) {
    problems.push(`label ${ENV_REFERENCES_LABEL} names ${entries.length} references; at most ${MAX_LABEL_SECRETS} per container`);
    return [];
  }
  const refs: EnvReference[] = [];
  for (const entry of entries) {
    const eq = entry.indexOf("=");
    const variable = eq > 0 ? entry.slice(0, eq) : "";
    const target = eq > 0 ? entry.slice(eq + 1) : "";
    const hash = target.lastIndexOf("#");
    const secret = hash >= 0 ? target.slice(0, hash) : target;
    const key = hash >= 0 ? target.slice(hash + 1) : undefined;
    if (!VARIABLE.test(variable) || secret === "" || key === "") {
      problems.push(`label ${ENV_REFERENCES_LABEL} entry ${printable(entry, 128)} is not VAR=<secret>[#key]`);
      continue;
    }
    const problem = askedNameProblem(secret);
    if (problem) {
      problems.push(`label ${ENV_REFERENCES_LABEL} entry for ${variable} ${problem}`);
      continue;
    }
    refs.push({ variable, secret, ...(key !== undefined ? { key } : {}) });
  }
  return refs;
}

/** One env spec per reference; `specFor` is the same lookup DSO volumes use (dso.yaml rules). */
export function envReferenceSpecs(
  labels: Record<string, string>,
  config: DsoConfig,
  specFor: (name: string, config: DsoConfig) => SecretSpec | undefined,
  warnings: string[],
  who: string,
): SecretSpec[] {
  const problems: string[] = [];
  const specs: SecretSpec[] = [];
  for (const ref of parseEnvReferences(labels[ENV_REFERENCES_LABEL], problems)) {
    const base = specFor(ref.secret, config);
    if (!base) {
      problems.push(`label ${ENV_REFERENCES_LABEL} names ${printable(ref.secret, 128)}, which dso.yaml does not grant this container (not declared, or outside its targets)`);
      continue;
    }
    specs.push({ ...base, inject: { type: "env" }, mappings: { [ref.key ?? PLAIN_VALUE_KEY]: ref.variable } });
  }
  for (const p of problems) warnings.push(`${who}: ${p}`);
  return specs;
}
