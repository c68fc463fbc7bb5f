/**
 * Which secrets a container gets and how it is reloaded, from its labels (compatible with the Go
 * DSO: dso.reloader, dso.secrets, dso.update.strategy) plus ours (dso.update.signal,
 * dso.inject.{path,mode,uid,gid}), and from `secrets[].targets` in dso.yaml. Parsing happens
 * here, at the edge; a bad label value skips the container with a warning naming the label.
 * Who may have which secret is decided here too (grantSecret), for every way of asking: a name
 * dso.yaml does not declare only through a provider with `allow_undeclared`, a declared secret
 * with targets only by those targets.
 */
import * as v from "valibot";
import { suggestKey } from "../config/collect.ts";
import { SIGNAL_NAMES, STRATEGY_NAMES } from "../config/schema.ts";
import type { DsoConfig, SecretSpec, SignalName, StrategyName } from "../config/types.ts";
import { FILE_MODE_RULE, MAX_ID, parseFileMode, parseOwnerId, targetPathProblem } from "../util/file-rules.ts";
import { MAX_NAME_LENGTH } from "../rpc/protocol.ts";
import { printable } from "../util/printable.ts";

export const LABEL = {
  reloader: "dso.reloader",
  secrets: "dso.secrets",
  strategy: "dso.update.strategy",
  signal: "dso.update.signal",
  path: "dso.inject.path",
  mode: "dso.inject.mode",
  uid: "dso.inject.uid",
  gid: "dso.inject.gid",
} as const;

export interface ContainerInfo {
  id: string;
  /** Without the leading slash. */
  name: string;
  /** The labels given at docker run (never the image's, labels.ts) or a Swarm service's. */
  labels: Record<string, string>;
  /** Swarm services are selected like containers (swarm.ts); messages say which. */
  kind?: "container" | "service";
}

export interface FileOverrides {
  path?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface Selection {
  containerId: string;
  containerName: string;
  secrets: SecretSpec[];
  strategy: StrategyName;
  signal: SignalName;
  /** From dso.inject.* labels; they win over the secret's inject settings. */
  files: FileOverrides;
  healthCheckTimeoutMs: number;
}

/** Names a container asked for and may not have: one line naming it and the label, for log and audit. */
export interface Refusal {
  /** The names refused (none when the label as a whole is, e.g. 6,000 names). */
  secrets: string[];
  message: string;
}

export type SelectionOutcome =
  | { selected: true; selection: Selection; warnings: string[]; refused: Refusal[] }
  | { selected: false; warnings: string[]; refused: Refusal[] };


const strategyLabel = v.picklist(STRATEGY_NAMES, `must be one of ${STRATEGY_NAMES.join(", ")}`);
const signalLabel = v.pipe(
  v.string(),
  v.transform((s) => {
    const upper = s.trim().toUpperCase();
    return upper.startsWith("SIG") ? upper : `SIG${upper}`;
  }),
  v.picklist(SIGNAL_NAMES, "must be a signal name such as SIGHUP or SIGUSR1"),
);
const pathLabel = v.pipe(
  v.string(),
  v.check((p) => targetPathProblem(p) === undefined, (issue) => targetPathProblem(issue.input as string) ?? "is not a target path"),
);
const modeLabel = v.pipe(
  v.string(),
  v.check((s) => parseFileMode(s) !== undefined, `must be ${FILE_MODE_RULE}`),
  v.transform((s) => parseFileMode(s)!),
);
const idLabel = v.pipe(
  v.string(),
  v.check((s) => parseOwnerId(s) !== undefined, `must be a numeric id from 0 to ${MAX_ID}`),
  v.transform((s) => parseOwnerId(s)!),
);

/** The container's dso.update.strategy, when present and valid (selectContainer reports a bad one). */
export function strategyFromLabels(labels: Record<string, string>): StrategyName | undefined {
  const parsed = v.safeParse(strategyLabel, labels[LABEL.strategy]);
  return parsed.success ? parsed.output : undefined;
}

function parseLabel<T>(
  schema: v.GenericSchema<string, T>,
  labels: Record<string, string>,
  key: string,
  errors: string[],
): T | undefined {
  const raw = labels[key];
  if (raw === undefined) return undefined;
  const parsed = v.safeParse(schema, raw);
  if (parsed.success) return parsed.output;
  errors.push(`label ${key}=${printable(raw)} ${parsed.issues[0]?.message ?? "is invalid"}`);
  return undefined;
}

/** Who asks for a secret: a container (its own labels), a Swarm service, or a DSO volume. */
export type Requester = { kind: "container" | "service"; id: string; name: string; labels: Record<string, string> } | { kind: "volume"; name: string };

/** A name asked for: the spec to serve it with, or why it is refused (one clause, no subject). */
export type Grant = { spec: SecretSpec } | { refused: string };

/** Names per container in dso.secrets (finding 8: one label must not stop rotation for others). */
export const MAX_LABEL_SECRETS = 256;
/** What a name asked for by a container, a volume or `dso inject` may contain: printable ASCII. */
const ASKED_NAME = /^[\x20-\x7e]+$/;

/** Why a name asked for at the edge is not one (too long, odd characters); undefined when fine. */
export function askedNameProblem(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `has a name of ${name.length} characters; at most ${MAX_NAME_LENGTH}`;
  if (!ASKED_NAME.test(name)) return `has a name with characters other than printable ASCII (${printable(name, 64)})`;
  return undefined;
}

function hasTargets(secret: SecretSpec): boolean {
  const { containers, labels, volumes } = secret.targets;
  return containers.length > 0 || Object.keys(labels).length > 0 || volumes.length > 0;
}

function inTargets(secret: SecretSpec, who: Requester): boolean {
  const { containers, labels, volumes } = secret.targets;
  if (who.kind === "volume") return volumes.includes(who.name);
  const byName = containers.some((t) => t === who.name || t === who.id || (t.length >= 12 && who.id.startsWith(t)));
  const labelKeys = Object.keys(labels);
  const byLabels = labelKeys.length > 0 && labelKeys.every((k) => who.labels[k] === labels[k]);
  return byName || byLabels;
}

/**
 * A secret named only by a label, a volume or `dso inject`, served with the defaults by the one
 * provider that opts in with `allow_undeclared` (the built-in file provider does); undefined when
 * none or several do.
 */
export function implicitSecretSpec(name: string, config: DsoConfig): SecretSpec | undefined {
  const open = Object.values(config.providers).filter((p) => p.allowUndeclared);
  if (open.length !== 1) return undefined;
  const { inject, rotation } = config.defaults;
  return {
    name,
    provider: open[0]!.name,
    inject: inject.type === "env" ? { type: "env" } : { type: "file", path: inject.path, uid: inject.uid, gid: inject.gid, mode: inject.mode },
    targets: { containers: [], labels: {}, volumes: [] },
    mappings: {},
    rotation: {
      enabled: rotation.enabled,
      strategy: rotation.strategy,
      signal: config.agent.rotation.signal,
      healthCheckTimeoutMs: config.agent.rotation.healthCheckTimeoutMs,
    },
  };
}

/**
 * Whether `who` may have the secret `name`: a secret dso.yaml declares, when its targets (if it
 * has any) include the asker; a name it does not declare only through a provider that opts in.
 * Every way of asking goes through here: labels, DSO volumes, `dso inject`, Swarm services.
 */
/** Longer asked names get no "did you mean" (the edit distance is quadratic in the length). */
const MAX_SUGGESTED_NAME = 128;

export function grantSecret(name: string, config: DsoConfig, who: Requester): Grant {
  const declared = config.secrets.find((s) => s.name === name);
  const shown = printable(name, 128);
  if (declared) {
    if (!hasTargets(declared) || inTargets(declared, who)) return { spec: declared };
    const how = who.kind === "volume" ? "secrets[].targets.volumes" : "secrets[].targets";
    return { refused: `secret ${shown} is limited to its targets in dso.yaml, which leave this ${who.kind} out (add it to ${how})` };
  }
  const implicit = implicitSecretSpec(name, config);
  if (implicit) return { spec: implicit };
  const open = Object.values(config.providers).filter((p) => p.allowUndeclared);
  if (open.length > 1) return { refused: `dso.yaml does not declare ${shown} and several providers allow undeclared names (${open.map((p) => p.name).join(", ")}): declare it in secrets[] with its provider` };
  const example = Object.keys(config.providers)[0] ?? "<name>";
  // A typo (db_pasword) is the common case: name the declared secret it is closest to.
  const near = name.length <= MAX_SUGGESTED_NAME ? suggestKey(name, config.secrets.map((s) => s.name)) : undefined;
  const hint = near ? ` (did you mean ${printable(near, 128)}?)` : "";
  return { refused: `dso.yaml does not declare ${shown}${hint}: list it in secrets[] (or set providers.${example}.allow_undeclared: true)` };
}

/** The names in a dso.secrets label, or the one-line reason the label is refused as a whole. */
function labelledSecretNames(container: ContainerInfo): { names: string[] } | { problem: string } {
  if (container.labels[LABEL.reloader] !== "true") return { names: [] };
  const names = [
    ...new Set(
      (container.labels[LABEL.secrets] ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
  ];
  if (names.length > MAX_LABEL_SECRETS) return { problem: `label ${LABEL.secrets} names ${names.length} secrets; at most ${MAX_LABEL_SECRETS} per container` };
  for (const name of names) {
    const problem = askedNameProblem(name);
    if (problem) return { problem: `label ${LABEL.secrets} ${problem}` };
  }
  return { names };
}

export function selectContainer(container: ContainerInfo, config: DsoConfig): SelectionOutcome {
  const kind = container.kind ?? "container";
  const who = `${kind} ${container.name || container.id.slice(0, 12)}`;
  const warnings: string[] = [];
  const refused: Refusal[] = [];
  const wanted = new Map<string, SecretSpec>();
  const requester: Requester = { kind, id: container.id, name: container.name, labels: container.labels };

  const asked = labelledSecretNames(container);
  if ("problem" in asked) {
    // The whole container is skipped: a hostile label is its own problem, never its provider's.
    return { selected: false, warnings, refused: [{ secrets: [], message: `${who}: ${asked.problem}; ${kind} skipped` }] };
  }
  for (const name of asked.names) {
    const grant = grantSecret(name, config, requester);
    if ("spec" in grant) wanted.set(name, grant.spec);
    else refused.push({ secrets: [name], message: `${who}: label ${LABEL.secrets} names ${printable(name, 128)}, refused: ${grant.refused}` });
  }
  for (const spec of config.secrets) if (hasTargets(spec) && inTargets(spec, requester)) wanted.set(spec.name, spec);

  if (container.labels[LABEL.reloader] === "true" && asked.names.length === 0 && wanted.size === 0) {
    warnings.push(`${who}: has ${LABEL.reloader}=true but no ${LABEL.secrets} label; skipped`);
  }
  if (wanted.size === 0) return { selected: false, warnings, refused };

  const errors: string[] = [];
  const strategyFromLabel = parseLabel(strategyLabel, container.labels, LABEL.strategy, errors);
  const signalFromLabel = parseLabel(signalLabel, container.labels, LABEL.signal, errors);
  const files: FileOverrides = {
    path: parseLabel(pathLabel, container.labels, LABEL.path, errors),
    mode: parseLabel(modeLabel, container.labels, LABEL.mode, errors),
    uid: parseLabel(idLabel, container.labels, LABEL.uid, errors),
    gid: parseLabel(idLabel, container.labels, LABEL.gid, errors),
  };
  if (errors.length > 0) {
    return { selected: false, warnings: [...warnings, ...errors.map((e) => `${who}: ${e}; ${kind} skipped`)], refused };
  }

  const secrets = [...wanted.values()];
  const first = secrets[0]!;
  const rotating = secrets.find((s) => s.rotation.enabled);
  const strategy = strategyFromLabel ?? config.agent.rotation.strategy ?? rotating?.rotation.strategy ?? "none";
  return {
    selected: true,
    warnings,
    refused,
    selection: {
      containerId: container.id,
      containerName: container.name,
      secrets,
      strategy,
      signal: signalFromLabel ?? first.rotation.signal ?? config.agent.rotation.signal,
      files,
      healthCheckTimeoutMs: first.rotation.healthCheckTimeoutMs ?? config.agent.rotation.healthCheckTimeoutMs,
    },
  };
}

/** Labels a container must carry to be considered by the label path (used to filter list calls). */
export const RELOADER_FILTER = { label: [`${LABEL.reloader}=true`] };
