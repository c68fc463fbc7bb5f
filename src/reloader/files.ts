/**
 * Turns fetched secret values into the files (or environment variables) a container receives:
 * `mappings` pick keys and name the files; without mappings a JSON secret gives one file per key
 * and a plain secret one file named after the secret. Grouped by target directory. File contents
 * are views into the fetched bytes, so the fetch window's wipe reaches them.
 */
import type { SecretSpec } from "../config/types.ts";
import { attachDerivedBytes, type SecretBytes } from "../rpc/wire-values.ts";
import { TemplateError } from "../templates/errors.ts";
import { renderOutput, type OutputSpec } from "../templates/outputs.ts";
import type { SecretFile } from "../delivery/types.ts";
import type { FetchedSecret } from "../secrets/types.ts";
import type { Selection } from "./selection.ts";

export type { FetchedSecret };

/** The directory a file secret goes to in a container: the dso.inject.path label wins. */
export function targetPathOf(selection: Pick<Selection, "files">, spec: SecretSpec): string {
  return selection.files.path ?? (spec.inject.type === "file" ? spec.inject.path : "");
}

/** The file secrets of a selection, grouped by the directory they go to. */
export function groupByTarget(selection: Pick<Selection, "files">, specs: readonly SecretSpec[]): Map<string, SecretSpec[]> {
  const byPath = new Map<string, SecretSpec[]>();
  for (const spec of specs) {
    if (spec.inject.type !== "file") continue;
    const path = targetPathOf(selection, spec);
    byPath.set(path, [...(byPath.get(path) ?? []), spec]);
  }
  return byPath;
}

export interface DeliveryGroup {
  /** Directory inside the container. */
  path: string;
  files: SecretFile[];
  /** secret name → fingerprint of the value delivered, for the manifest and `dso ls`. */
  fingerprints: Record<string, string>;
}

/** The secrets whose versions a file secret's delivered files carry: its own, or its outputs' sources. */
export function versionSourcesOf(spec: SecretSpec): string[] {
  return spec.outputs?.length ? spec.outputs.flatMap((o) => o.sources) : [spec.name];
}

/**
 * What buildDeliveries would give each directory as its fingerprints, from the fingerprints
 * already known (no value read); undefined while one is not known. A target that already holds
 * the versions these name needs no fetch.
 */
export function knownGroupFingerprints(selection: Selection, fingerprintOf: (name: string) => string | undefined): Map<string, Record<string, string>> | undefined {
  const groups = new Map<string, Record<string, string>>();
  for (const spec of selection.secrets) {
    if (spec.inject.type === "env") continue;
    const path = targetPathOf(selection, spec);
    const fingerprints = groups.get(path) ?? {};
    for (const name of versionSourcesOf(spec)) {
      const fingerprint = fingerprintOf(name);
      if (!fingerprint) return undefined;
      fingerprints[name] = fingerprint;
    }
    groups.set(path, fingerprints);
  }
  return groups;
}

export interface BuiltDeliveries {
  groups: DeliveryGroup[];
  env: Record<string, string>;
  errors: string[];
}

/** key inside the secret → output name. */
function outputNames(spec: SecretSpec, value: SecretBytes): Array<[string, string]> | string {
  const mapped = Object.entries(spec.mappings);
  if (mapped.length > 0) {
    const missing = mapped.filter(([key]) => !value.has(key)).map(([key]) => key);
    if (missing.length > 0) {
      return `secret "${spec.name}": key(s) ${missing.map((k) => `"${k}"`).join(", ")} not found; it has ${[...value.keys()]
        .map((k) => `"${k}"`)
        .join(", ")}`;
    }
    return mapped;
  }
  const keys = [...value.keys()];
  if (keys.length === 1 && keys[0] === "value") {
    const base = spec.name.split(/[/:]/).filter(Boolean).at(-1) ?? spec.name;
    return [["value", base]];
  }
  return keys.map((k) => [k, k]);
}

export function buildDeliveries(selection: Selection, fetched: Map<string, FetchedSecret>): BuiltDeliveries {
  const groups = new Map<string, DeliveryGroup>();
  const env: Record<string, string> = {};
  const errors: string[] = [];

  for (const spec of selection.secrets) {
    const secret = fetched.get(spec.name);
    if (!secret) {
      errors.push(`secret "${spec.name}" is not available`);
      continue;
    }
    if (spec.outputs?.length) {
      const rendered = renderSpecOutputs(spec, fetched, secret);
      if (typeof rendered === "string") errors.push(rendered);
      else addOutputs(selection, spec, rendered, fetched, { groups, env, errors });
      continue;
    }
    const names = outputNames(spec, secret.value);
    if (typeof names === "string") {
      errors.push(names);
      continue;
    }
    if (spec.inject.type === "env") {
      // An environment variable is a string by nature (it goes into a JSON request body): the
      // one place a value becomes one. docs/security.md counts these copies.
      for (const [key, variable] of names) env[variable] = new TextDecoder().decode(secret.value.get(key)!);
      continue;
    }
    const inject = spec.inject;
    const path = targetPathOf(selection, spec);
    const group = groups.get(path) ?? { path, files: [], fingerprints: {} };
    groups.set(path, group);
    group.fingerprints[spec.name] = secret.fingerprint;
    for (const [key, fileName] of names) {
      if (group.files.some((f) => f.name === fileName)) {
        errors.push(`secret "${spec.name}": file "${fileName}" in ${path} is also written by another secret`);
        continue;
      }
      group.files.push({
        name: fileName,
        // A view into the fetched bytes, not a copy: wiping the window's values wipes the file too.
        content: secret.value.get(key)!,
        mode: selection.files.mode ?? inject.mode,
        uid: selection.files.uid ?? inject.uid,
        gid: selection.files.gid ?? inject.gid,
      });
    }
  }
  return { groups: [...groups.values()], env, errors };
}

/**
 * Outputs rendered in a window, per owner value: a wave hands every container the same value
 * objects, so an output over the same source values is rendered once per wave and its buffer
 * shared (1,000 containers, one render), not once per container. A per-container source (a leased
 * credential) is another value object, so another render. Gone with the value (WeakMap).
 */
const rendered = new WeakMap<SecretBytes, Map<OutputSpec, { sources: Array<SecretBytes | undefined>; bytes: Uint8Array }>>();

/**
 * A secret's templates and formats rendered over the values of this delivery (templates/outputs.ts):
 * every output or none (the first error, naming file:line and key). Each rendered buffer is tied to
 * the owner's value, so the window that wipes the values wipes the outputs too.
 */
function renderSpecOutputs(spec: SecretSpec, fetched: Map<string, FetchedSecret>, secret: FetchedSecret): Array<[OutputSpec, Uint8Array]> | string {
  const out: Array<[OutputSpec, Uint8Array]> = [];
  const done = rendered.get(secret.value) ?? new Map<OutputSpec, { sources: Array<SecretBytes | undefined>; bytes: Uint8Array }>();
  rendered.set(secret.value, done);
  let values: Map<string, SecretBytes> | undefined;
  for (const output of spec.outputs ?? []) {
    const sources = output.sources.map((name) => fetched.get(name)?.value);
    const earlier = done.get(output);
    if (earlier?.sources.every((value, i) => value === sources[i])) {
      out.push([output, earlier.bytes]);
      continue;
    }
    values ??= new Map([...fetched].map(([name, f]) => [name, f.value] as const));
    try {
      const bytes = renderOutput(output, values);
      attachDerivedBytes(secret.value, bytes);
      done.set(output, { sources, bytes });
      out.push([output, bytes]);
    } catch (error) {
      if (error instanceof TemplateError) return `secret "${spec.name}": ${error.message}`;
      throw error;
    }
  }
  return out;
}

function addOutputs(
  selection: Selection,
  spec: SecretSpec,
  rendered: Array<[OutputSpec, Uint8Array]>,
  fetched: Map<string, FetchedSecret>,
  into: { groups: Map<string, DeliveryGroup>; env: Record<string, string>; errors: string[] },
): void {
  if (spec.inject.type === "env") {
    // As for plain env secrets: a variable is a string by nature, the one copy docs/security.md counts.
    for (const [output, bytes] of rendered) into.env[output.name] = new TextDecoder().decode(bytes);
    return;
  }
  const inject = spec.inject;
  const path = targetPathOf(selection, spec);
  const group = into.groups.get(path) ?? { path, files: [], fingerprints: {} };
  into.groups.set(path, group);
  // Every source's version is part of the set's marker: a change of any re-renders.
  for (const source of versionSourcesOf(spec)) group.fingerprints[source] = fetched.get(source)!.fingerprint;
  for (const [output, bytes] of rendered) {
    if (group.files.some((f) => f.name === output.name)) {
      into.errors.push(`secret "${spec.name}": file "${output.name}" in ${path} is also written by another secret`);
      continue;
    }
    group.files.push({
      name: output.name,
      content: bytes,
      mode: output.mode ?? selection.files.mode ?? inject.mode,
      uid: output.uid ?? selection.files.uid ?? inject.uid,
      gid: output.gid ?? selection.files.gid ?? inject.gid,
    });
  }
}
