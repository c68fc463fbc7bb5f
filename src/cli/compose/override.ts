/**
 * The extra compose file `dso up` passes after the user's own (never editing them). It holds no
 * value, only: a DSO volume per service with `dsofile://` references (mounted read-only at
 * FILE_MOUNT, so the files exist before the entrypoint: the volume driver's Mount), the variables
 * set to those files' paths, the `dso.env` label naming each `dso://` reference for the agent's
 * env injection, and those variables emptied until the agent re-creates the container with them.
 * Written as JSON, which every YAML parser reads; `$` is doubled against compose's interpolation.
 */
import { createHash } from "node:crypto";
import { DsoError } from "../../errors.ts";
import { servicesOf, type SecretReference } from "./references.ts";

export const FILE_MOUNT = "/run/secrets/dso";
/** The label src/reloader/env-references.ts reads (the CLI may not import the reloader: named twice). */
export const ENV_REFERENCES_LABEL = "dso.env";

export interface OverrideOptions {
  /** The volume driver name dockerd knows DSO by (default `dso`). */
  driver: string;
  /** A secret's dso.yaml `mappings` (key → file name), when dso.yaml is readable here and has them. */
  mappingsOf?: (secret: string) => Readonly<Record<string, string>> | undefined;
}

export interface Override {
  /** The document to write (JSON text). */
  text: string;
  /** Services that get their values by env injection (for the caveat). */
  envServices: string[];
}

function escapeDollars<T>(value: T): T {
  if (typeof value === "string") return value.replaceAll("$", "$$$$") as T;
  if (Array.isArray(value)) return value.map(escapeDollars) as T;
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [escapeDollars(k), escapeDollars(v)])) as T;
  return value;
}

/**
 * The file name a reference's secret lands under in the volume (reloader/files.ts rules): a key
 * (or a plain secret's `value`) that dso.yaml's mappings rename is found under its mapped name; one
 * the mappings leave out is not in the volume at all, which is refused here rather than pointing
 * the variable at a file that will not exist.
 */
export function fileNameOf(ref: SecretReference, mappings?: Readonly<Record<string, string>>): string {
  if (mappings && Object.keys(mappings).length > 0) {
    const key = ref.key ?? "value";
    const mapped = mappings[key];
    if (mapped === undefined) {
      throw new DsoError(
        "USAGE",
        `service ${ref.service}: environment ${ref.variable}: dso.yaml's mappings for secret ${ref.secret} name the files ${Object.values(mappings).join(", ")} and leave ${ref.key !== undefined ? `key ${ref.key}` : "its value"} out`,
        { hint: `add ${key}: <file name> to that secret's mappings, or name a mapped key with dsofile://${ref.secret}#<key>` },
      );
    }
    return mapped;
  }
  if (ref.key !== undefined) return ref.key;
  return ref.secret.split(/[/:]/).filter(Boolean).at(-1) ?? ref.secret;
}

/** `user: "1000"` or `"1000:1000"`: numeric ids only; a name cannot be resolved outside the image. */
function ownerOf(service: unknown): { uid?: string; gid?: string } {
  const user = (service as { user?: unknown } | null)?.user;
  const match = typeof user === "string" || typeof user === "number" ? /^(\d+)(?::(\d+))?$/.exec(String(user)) : null;
  if (!match) return {};
  return { uid: match[1], gid: match[2] ?? match[1] };
}

/** Named after everything in its options: a changed secret list or owner is a new volume, never a stale one. */
function volumeNameOf(service: string, secrets: string[], owner: { uid?: string; gid?: string }): string {
  const digest = createHash("sha256").update(`${secrets.join(",")}\n${owner.uid ?? ""}:${owner.gid ?? ""}`).digest("hex").slice(0, 8);
  return `dso_${service}_${digest}`;
}

export function buildOverride(model: unknown, refs: readonly SecretReference[], options: OverrideOptions): Override {
  const version = (model as { version?: unknown } | null)?.version;
  if (version !== undefined && String(version).startsWith("1")) {
    throw new DsoError("USAGE", `compose file format version ${String(version)} has no named volumes; use version 2 or later`);
  }
  const services: Record<string, Record<string, unknown>> = {};
  const volumes: Record<string, unknown> = {};
  const byService = Map.groupBy(refs, (r) => r.service);
  const defs = servicesOf(model);
  const envServices: string[] = [];
  for (const [service, list] of byService) {
    const environment: Record<string, string> = {};
    const out: Record<string, unknown> = { environment };
    const files = list.filter((r) => r.kind === "file");
    if (files.length > 0) {
      const seen = new Map<string, string>();
      for (const ref of files) {
        const name = fileNameOf(ref, options.mappingsOf?.(ref.secret));
        const other = seen.get(name);
        if (other !== undefined && other !== ref.secret) {
          throw new DsoError("USAGE", `service ${service}: dsofile://${ref.secret} and dsofile://${other} would both write the file ${name}`);
        }
        seen.set(name, ref.secret);
        environment[ref.variable] = `${FILE_MOUNT}/${name}`;
      }
      const secrets = [...new Set(files.map((r) => r.secret))].sort();
      const owner = ownerOf(defs[service]);
      const volume = volumeNameOf(service, secrets, owner);
      volumes[volume] = { driver: options.driver, driver_opts: { secrets: secrets.join(","), ...owner } };
      out.volumes = [`${volume}:${FILE_MOUNT}:ro`];
    }
    const envRefs = list.filter((r) => r.kind === "env");
    if (envRefs.length > 0) {
      envServices.push(service);
      for (const ref of envRefs) environment[ref.variable] = "";
      const entries = envRefs.map((r) => `${r.variable}=${r.secret}${r.key !== undefined ? `#${r.key}` : ""}`);
      out.labels = { [ENV_REFERENCES_LABEL]: entries.join(",") };
    }
    services[service] = out;
  }
  const doc: Record<string, unknown> = {};
  if (version !== undefined) doc.version = String(version);
  doc.services = services;
  if (Object.keys(volumes).length > 0) doc.volumes = volumes;
  return { text: `${JSON.stringify(escapeDollars(doc), null, 2)}\n`, envServices };
}
