/**
 * What DSO wants in one running container: the file sets per target directory (labels and
 * `secrets[].targets`, see selection.ts), the environment variables (env injection), and the DSO
 * volumes it mounts — a container that only mounts a DSO volume is served too, with the
 * volume's `strategy=` option or `none`. Computed from Docker's container list (labels and mounts
 * are in it), so a reconcile pass needs no inspect per container.
 */
import type Dockerode from "dockerode";
import type { DsoConfig, SecretSpec, SignalName, StrategyName } from "../config/types.ts";
import { parseDriverOptions } from "../delivery/plugin/driver-options.ts";
import { envReferenceSpecs } from "./env-references.ts";
import { groupByTarget } from "./files.ts";
import { DsoError } from "../errors.ts";
import type { ContainerLabels } from "./labels.ts";
import { askedNameProblem, grantSecret, implicitSecretSpec, selectContainer, strategyFromLabels, type Refusal, type Selection } from "./selection.ts";

/** The label a container re-created for env injection carries: the marker of its variables. */
export const ENV_VERSION_LABEL = "dso.env-version";
const SWARM_TASK_LABEL = "com.docker.swarm.task.id";

export interface ContainerFacts {
  id: string;
  name: string;
  /** The container's own labels (image labels removed, see labels.ts); the merged ones when `imageProblem` is set. */
  labels: Record<string, string>;
  /** Why the container's own labels are unknown (its image cannot be inspected): it is granted nothing by labels or targets. */
  imageProblem?: string;
  running: boolean;
  mounts: Array<{ type?: string; name?: string; driver?: string; destination: string }>;
}

export interface TargetUnit {
  /** Directory inside the container. */
  path: string;
  specs: SecretSpec[];
}

export interface VolumeUnit {
  volume: string;
  destination: string;
  secrets: string[];
}

export interface Desired {
  id: string;
  name: string;
  /** The label/target selection; undefined for a container served only through DSO volumes. */
  selection?: Selection;
  targets: TargetUnit[];
  envSpecs: SecretSpec[];
  volumes: VolumeUnit[];
  strategy: StrategyName;
  signal: SignalName;
  healthCheckTimeoutMs: number;
  /** Every secret name the container uses (files, env and volumes). */
  secrets: string[];
  /** The ENV_VERSION_LABEL the container carries, if any. */
  envMarker?: string;
  /** The container's own labels; undefined when they are unknown (see ContainerFacts.imageProblem). */
  labels?: Record<string, string>;
  /** Secrets it asked for and may not have (logged and audited by converge.ts). */
  refusals: Refusal[];
}

export function factsFromList(entry: Dockerode.ContainerInfo, labels: ContainerLabels): ContainerFacts {
  return {
    id: entry.Id,
    name: (entry.Names?.[0] ?? entry.Id).replace(/^\//, ""),
    ...(labels.known ? { labels: labels.labels } : { labels: labels.merged, imageProblem: labels.problem }),
    running: entry.State === "running",
    mounts: (entry.Mounts ?? []).map((m) => ({ type: m.Type, name: m.Name, driver: m.Driver, destination: m.Destination })),
  };
}

export function isSwarmTask(labels: Record<string, string> | null | undefined): boolean {
  return labels?.[SWARM_TASK_LABEL] !== undefined;
}

export interface DesiredOptions {
  config: DsoConfig;
  /** The driver options of a DSO volume, from the driver's record; undefined when unknown. */
  volumeOptions(volume: string): Readonly<Record<string, string>> | undefined;
}

/** What DSO wants in the container, or undefined when it serves nothing there. */
export function desiredFor(facts: ContainerFacts, opts: DesiredOptions): { desired?: Desired; warnings: string[] } {
  const { config } = opts;
  const outcome = selectContainer({ id: facts.id, name: facts.name, labels: facts.labels }, config);
  // Unknown labels grant nothing: what they would have asked for is refused, in one line.
  const selection = outcome.selected && !facts.imageProblem ? outcome.selection : undefined;
  const warnings = facts.imageProblem ? [] : [...outcome.warnings];
  const refusals = facts.imageProblem ? refuseAll(facts, outcome) : outcome.refused;

  // `dso up`'s dso:// references (env-references.ts): env specs of their own, same dso.yaml rules.
  // Granted as a dso.secrets label would be: declared (or allow_undeclared), within its targets.
  const grantForContainer = (name: string): SecretSpec | undefined => {
    const grant = grantSecret(name, config, { kind: "container", id: facts.id, name: facts.name, labels: facts.labels });
    return "spec" in grant ? grant.spec : undefined;
  };
  const referenced = facts.imageProblem ? [] : envReferenceSpecs(facts.labels, config, grantForContainer, warnings, `container ${facts.name}`);
  const envSpecs = [...(selection?.secrets ?? []).filter((s) => s.inject.type === "env"), ...referenced];
  const byPath = selection ? groupByTarget(selection, selection.secrets) : new Map<string, SecretSpec[]>();
  const targets = [...byPath].map(([path, specs]) => ({ path, specs }));

  const volumes: VolumeUnit[] = [];
  let volumeStrategy: { strategy?: StrategyName; signal?: SignalName } = {};
  for (const mount of facts.mounts) {
    if (mount.type !== "volume" || !mount.name) continue;
    // A DSO volume is one DSO's driver has a record of, whatever name dockerd knows the driver by
    // (its socket may be linked into /run/docker/plugins under another name).
    const driverOpts = opts.volumeOptions(mount.name);
    if (!driverOpts) continue;
    // A labelled file set aimed at the volume is delivered into it like any target.
    if (byPath.has(mount.destination)) continue;
    try {
      const parsed = parseDriverOptions(driverOpts);
      if (parsed.secrets.length === 0) continue;
      volumes.push({ volume: mount.name, destination: mount.destination, secrets: parsed.secrets });
      if (parsed.strategy && !volumeStrategy.strategy) volumeStrategy = { strategy: parsed.strategy, signal: parsed.signal };
    } catch (error) {
      warnings.push(`container ${facts.name}: DSO volume ${mount.name}: ${(error as Error).message}`);
    }
  }
  if (!selection && volumes.length === 0 && refusals.length === 0 && referenced.length === 0) return { warnings };

  const volumeSecrets = volumes.flatMap((v) => v.secrets);
  const configured = volumeSecrets.map((n) => config.secrets.find((s) => s.name === n)).filter((s) => s !== undefined);
  // A volume-only container: its own dso.update.strategy label, the volume's strategy= option, else
  // a strategy dso.yaml names.
  const labelStrategy = facts.imageProblem ? undefined : strategyFromLabels(facts.labels);
  const yamlStrategy = config.agent.rotation.strategy ?? configured.find((s) => s.rotation.enabled)?.rotation.strategy;
  const strategy = selection?.strategy ?? labelStrategy ?? volumeStrategy.strategy ?? yamlStrategy ?? "none";
  return {
    warnings,
    desired: {
      id: facts.id,
      name: facts.name,
      selection,
      targets,
      envSpecs,
      volumes,
      strategy,
      signal: selection?.signal ?? volumeStrategy.signal ?? configured[0]?.rotation.signal ?? config.agent.rotation.signal,
      healthCheckTimeoutMs: selection?.healthCheckTimeoutMs ?? config.agent.rotation.healthCheckTimeoutMs,
      secrets: [...new Set([...(selection?.secrets ?? []).map((s) => s.name), ...referenced.map((s) => s.name), ...volumeSecrets])],
      envMarker: facts.labels[ENV_VERSION_LABEL],
      ...(facts.imageProblem ? {} : { labels: facts.labels }),
      refusals,
    },
  };
}

/** A container whose own labels are unknown: everything its merged labels ask for, refused. */
function refuseAll(facts: ContainerFacts, outcome: ReturnType<typeof selectContainer>): Refusal[] {
  const asked = new Set([...(outcome.selected ? outcome.selection.secrets.map((s) => s.name) : []), ...outcome.refused.flatMap((r) => r.secrets)]);
  if (asked.size === 0 && outcome.refused.length === 0) return [];
  return [{ secrets: [...asked], message: `container ${facts.name}: ${facts.imageProblem}; nothing is delivered to it by labels or targets` }];
}

/**
 * The spec a secret named by some volume is tracked with (polled): from dso.yaml, or implicit
 * through a provider that allows undeclared names. Whether a given volume may have it is
 * grantVolumeSecret's question.
 */
export function volumeSecretSpec(name: string, config: DsoConfig): SecretSpec | undefined {
  return config.secrets.find((s) => s.name === name) ?? implicitSecretSpec(name, config);
}

/**
 * The spec of a secret the DSO volume `volume` names in `secrets=`, or DELIVERY_REFUSED naming
 * the volume and the secret: undeclared (without `allow_undeclared`), or outside its targets.
 */
export function grantVolumeSecret(volume: string, name: string, config: DsoConfig): SecretSpec {
  const problem = askedNameProblem(name);
  if (problem) throw new DsoError("DELIVERY_REFUSED", `volume ${volume}: option secrets ${problem}`);
  const grant = grantSecret(name, config, { kind: "volume", name: volume });
  if ("refused" in grant) throw new DsoError("DELIVERY_REFUSED", `volume ${volume}: ${grant.refused}`);
  if (grant.spec.inject.type === "file") return grant.spec;
  // A volume holds files: a secret declared `inject: env` (for labelled containers) is written
  // into it as files named like any volume secret's, never dropped (its mappings name variables).
  const { path, uid, gid, mode } = config.defaults.inject;
  return { ...grant.spec, inject: { type: "file", path, uid, gid, mode }, mappings: {} };
}

/** The container's selection; an empty one for a container served only through DSO volumes. */
export function selectionOf(d: Desired): Selection {
  return d.selection ?? { containerId: d.id, containerName: d.name, secrets: [], strategy: d.strategy, signal: d.signal, files: {}, healthCheckTimeoutMs: d.healthCheckTimeoutMs };
}
