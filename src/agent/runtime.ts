/**
 * The runtime both `dso agent` and a direct `dso inject` (no agent running) are built from, so both
 * fetch the same way and pick the same delivery mode for the same container: provider processes,
 * the secret store and source, the version markers, the keyed work queue, the delivery planner and
 * the reconciler.
 */
import type Dockerode from "dockerode";
import type { DsoConfig, ProviderConfig } from "../config/types.ts";
import { DeliveryPlanner, plannerOptionsFor } from "../delivery/planner.ts";
import type { FieldLogger } from "../log/logger.ts";
import { Reconciler } from "../reloader/reconciler.ts";
import type { DsoVolumes } from "../reloader/volumes.ts";
import { ProviderProcess, type ProviderObserver } from "../rpc/supervisor.ts";
import type { ReconcileObserver } from "../reloader/reconciler.ts";
import { SecretSource } from "../secrets/source.ts";
import { SecretStore } from "../secrets/store.ts";
import type { DynamicCredentials } from "../secrets/types.ts";
import { VersionMarkers } from "../secrets/version-marker.ts";
import { KeyedQueue } from "../util/keyed-queue.ts";
import { fingerprintKeyFor } from "./host-key.ts";

/** A provider instance's process; its value fingerprints are keyed from `hostKey` (see host-key.ts). */
export function providerProcess(
  name: string,
  spec: ProviderConfig,
  env: Record<string, string | undefined>,
  hostKey: Uint8Array,
  observer?: ProviderObserver,
): ProviderProcess {
  return new ProviderProcess({
    configure: {
      name,
      type: spec.type,
      ...(spec.region ? { region: spec.region } : {}),
      auth: { ...(spec.auth.method ? { method: spec.auth.method } : {}), params: spec.auth.params },
      config: spec.config,
      fingerprintKey: fingerprintKeyFor(hostKey, name),
      ...(spec.events ? { events: { queue: spec.events.queue } } : {}),
    },
    env,
    backoffBaseMs: spec.retry.backoffMs,
    ...(spec.timeoutMs === undefined ? {} : { callTimeoutMs: spec.timeoutMs }),
    ...(observer ? { observer } : {}),
  });
}

export interface SecretsRuntime {
  store: SecretStore;
  source: SecretSource;
  markers: VersionMarkers;
  queue: KeyedQueue;
}

export function buildSecretsRuntime(options: {
  config: DsoConfig;
  key: Uint8Array;
  provider: (name: string) => ProviderProcess | undefined;
  log: FieldLogger;
  onChanged?: (names: string[]) => void;
  dynamic?: () => DynamicCredentials | undefined;
}): SecretsRuntime {
  const store = new SecretStore(options.config.agent.cache);
  store.setSpecs(options.config.secrets);
  const source = new SecretSource({ store, provider: options.provider, log: options.log, onChanged: options.onChanged, dynamic: options.dynamic });
  // Templates are part of a version: the store holds the current specs (config reloads included).
  const markers = new VersionMarkers(options.key, (name) => store.get(name)?.spec.outputsDigest);
  return { store, source, markers, queue: new KeyedQueue() };
}

/** The Docker side: the planner with the daemon's facts, and the reconciler over it. */
export async function buildReconciler(options: {
  docker: Dockerode;
  secrets: SecretsRuntime;
  config: () => DsoConfig;
  socketPath: string;
  volumes?: DsoVolumes;
  log: FieldLogger;
  pendingReason?: (secret: string) => string;
  observer?: ReconcileObserver;
  usedElsewhere?: () => Iterable<string>;
}): Promise<{ planner: DeliveryPlanner; reconciler: Reconciler }> {
  const plannerOptions = await plannerOptionsFor(options.docker, options.socketPath, (volume) => options.volumes?.mountpointOf(volume));
  const planner = new DeliveryPlanner(options.docker, plannerOptions);
  const reconciler = new Reconciler({
    docker: options.docker,
    ...options.secrets,
    planner,
    volumes: options.volumes,
    log: options.log,
    config: options.config,
    pendingReason: options.pendingReason,
    observer: options.observer,
    usedElsewhere: options.usedElsewhere,
  });
  return { planner, reconciler };
}
