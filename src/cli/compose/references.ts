/**
 * The Go DSO's references in a compose service's environment: `dso://<secret>[#key]` (the
 * variable holds the value: env injection) and `dsofile://<secret>[#key]` (the variable holds the
 * path of a file DSO writes before the entrypoint). Read from the model `compose config` prints,
 * so every file, override, `extends` and `${VAR}` compose itself would use is taken into account.
 */
import { DsoError } from "../../errors.ts";
import { printable } from "../../util/printable.ts";

export type ReferenceKind = "env" | "file";

export interface SecretReference {
  service: string;
  variable: string;
  kind: ReferenceKind;
  secret: string;
  /** A key inside the provider's secret; absent for a plain secret. */
  key?: string;
}

const PREFIXES: ReadonlyArray<[string, ReferenceKind]> = [
  ["dsofile://", "file"],
  ["dso://", "env"],
];
// Secret names travel in comma-separated labels and volume options: no comma, no controls.
const BAD_NAME = /[,\u0000-\u001f\u007f]/;
/** What src/reloader/env-references.ts accepts as the variable of a dso:// reference. */
const ENV_VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The reference a variable's value holds, undefined for any other value. Throws on a malformed one. */
export function parseReference(service: string, variable: string, value: unknown): SecretReference | undefined {
  if (typeof value !== "string") return undefined;
  const prefix = PREFIXES.find(([p]) => value.startsWith(p));
  if (!prefix) return undefined;
  const body = value.slice(prefix[0].length);
  const hash = body.lastIndexOf("#");
  const secret = hash >= 0 ? body.slice(0, hash) : body;
  const key = hash >= 0 ? body.slice(hash + 1) : undefined;
  if (secret === "" || key === "" || BAD_NAME.test(body)) {
    throw new DsoError("USAGE", `service ${service}: environment ${variable}: ${printable(value, 128)} is not ${prefix[0]}<secret>[#key]`);
  }
  if (prefix[1] === "env" && !ENV_VARIABLE.test(variable)) {
    // The agent sets it from the dso.env label (VAR=<secret>,…): the same rule as there.
    throw new DsoError("USAGE", `service ${service}: environment ${printable(variable, 128)}: a dso:// variable name must be letters, digits and _ (not starting with a digit)`);
  }
  return { service, variable, kind: prefix[1], secret, ...(key !== undefined ? { key } : {}) };
}

/** A service's environment as compose prints it: a map, or (older output) a list of VAR=value. */
export function environmentOf(service: unknown): Record<string, unknown> {
  const env = (service as { environment?: unknown } | null)?.environment;
  if (Array.isArray(env)) {
    const out: Record<string, unknown> = {};
    for (const entry of env) {
      if (typeof entry !== "string") continue;
      const eq = entry.indexOf("=");
      if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    return out;
  }
  return env && typeof env === "object" ? (env as Record<string, unknown>) : {};
}

export function servicesOf(model: unknown): Record<string, unknown> {
  const services = (model as { services?: unknown } | null)?.services;
  return services && typeof services === "object" ? (services as Record<string, unknown>) : {};
}

/** Every reference of every service, in the order compose printed them. */
export function referencesOf(model: unknown): SecretReference[] {
  const refs: SecretReference[] = [];
  for (const [service, def] of Object.entries(servicesOf(model))) {
    for (const [variable, value] of Object.entries(environmentOf(def))) {
      const ref = parseReference(service, variable, value);
      if (ref) refs.push(ref);
    }
  }
  return refs;
}

/** `service.VAR` of values that hold a reference inside a longer string: never substituted. */
export function embeddedReferencesOf(model: unknown): string[] {
  const found: string[] = [];
  for (const [service, def] of Object.entries(servicesOf(model))) {
    for (const [variable, value] of Object.entries(environmentOf(def))) {
      if (typeof value !== "string" || PREFIXES.some(([p]) => value.startsWith(p))) continue;
      if (value.includes("dso://") || value.includes("dsofile://")) found.push(`${service}.${variable}`);
    }
  }
  return found;
}
