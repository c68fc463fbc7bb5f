/**
 * Which secrets a container gets and how it is reloaded, from its labels (compatible with the Go
 * DSO: dso.reloader, dso.secrets, dso.update.strategy) plus ours (dso.update.signal,
 * dso.inject.{path,mode,uid,gid}), and from `secrets[].targets` in dso.yaml. Parsing happens
 * here, at the edge; a bad label value skips the container with a warning naming the label.
 */
import * as v from "valibot";
import { SIGNAL_NAMES, STRATEGY_NAMES } from "../config/schema.ts";
import type { DsoConfig, SecretSpec, SignalName, StrategyName } from "../config/types.ts";
import { FILE_MODE_RULE, MAX_ID, parseFileMode, parseOwnerId, targetPathProblem } from "../util/file-rules.ts";
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
  labels: Record<string, string>;
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

export type SelectionOutcome =
  | { selected: true; selection: Selection; warnings: string[] }
  | { selected: false; warnings: string[] };


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

function matchesTargets(secret: SecretSpec, container: ContainerInfo): boolean {
  const { containers, labels } = secret.targets;
  const byName = containers.some((t) => t === container.name || t === container.id || (t.length >= 12 && container.id.startsWith(t)));
  const labelKeys = Object.keys(labels);
  const byLabels = labelKeys.length > 0 && labelKeys.every((k) => container.labels[k] === labels[k]);
  return byName || byLabels;
}

/**
 * A secret named only by a container label. With a single provider (e.g. the built-in file
 * provider and no dso.yaml) it needs no secrets[] entry: it gets the defaults.
 */
export function implicitSecretSpec(name: string, config: DsoConfig): SecretSpec | undefined {
  const providers = Object.keys(config.providers);
  if (providers.length !== 1) return undefined;
  const { inject, rotation } = config.defaults;
  return {
    name,
    provider: providers[0]!,
    inject: inject.type === "env" ? { type: "env" } : { type: "file", path: inject.path, uid: inject.uid, gid: inject.gid, mode: inject.mode },
    targets: { containers: [], labels: {} },
    mappings: {},
    rotation: {
      enabled: rotation.enabled,
      strategy: rotation.strategy,
      signal: config.agent.rotation.signal,
      healthCheckTimeoutMs: config.agent.rotation.healthCheckTimeoutMs,
    },
  };
}

function labelledSecretNames(container: ContainerInfo): string[] {
  if (container.labels[LABEL.reloader] !== "true") return [];
  return (container.labels[LABEL.secrets] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function selectContainer(container: ContainerInfo, config: DsoConfig): SelectionOutcome {
  const who = `container ${container.name || container.id.slice(0, 12)}`;
  const warnings: string[] = [];
  const wanted = new Map<string, SecretSpec>();

  const byName = new Map(config.secrets.map((s) => [s.name, s]));
  for (const name of labelledSecretNames(container)) {
    const spec = byName.get(name) ?? implicitSecretSpec(name, config);
    if (spec) wanted.set(name, spec);
    else
      warnings.push(
        `${who}: label ${LABEL.secrets} names ${printable(name, 128)}, which is not in secrets[] of dso.yaml (needed when several providers are configured)`,
      );
  }
  for (const spec of config.secrets) if (matchesTargets(spec, container)) wanted.set(spec.name, spec);

  if (container.labels[LABEL.reloader] === "true" && !container.labels[LABEL.secrets]?.trim() && wanted.size === 0) {
    warnings.push(`${who}: has ${LABEL.reloader}=true but no ${LABEL.secrets} label; skipped`);
  }
  if (wanted.size === 0) return { selected: false, warnings };

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
    return { selected: false, warnings: [...warnings, ...errors.map((e) => `${who}: ${e}; container skipped`)] };
  }

  const secrets = [...wanted.values()];
  const first = secrets[0]!;
  const rotating = secrets.find((s) => s.rotation.enabled);
  const strategy = strategyFromLabel ?? config.agent.rotation.strategy ?? rotating?.rotation.strategy ?? "none";
  return {
    selected: true,
    warnings,
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
