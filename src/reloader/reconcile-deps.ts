/**
 * What the reconciler's parts are built from and report to: the runtime it runs on (Docker, the
 * store, the source, the planner, the queue) and the observer told of every delivery and strategy
 * run. Types only, so the parts can share them without importing each other.
 */
import type Dockerode from "dockerode";
import type { AuditTrigger } from "../audit/audit-log.ts";
import type { DsoConfig } from "../config/types.ts";
import type { DeliveryPlanner } from "../delivery/planner.ts";
import type { FieldLogger } from "../log/logger.ts";
import type { SecretSource } from "../secrets/source.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import type { KeyedQueue } from "../util/keyed-queue.ts";
import type { DsoVolumes } from "./volumes.ts";

export type ContainerRef = { id: string; name?: string };
export type SecretVersion = { name: string; version?: string };

/** What the reconciler reports (the agent's Observer: metrics, audit trail, notifications). */
export interface ReconcileObserver {
  deliveryFinished(p: { container: ContainerRef; secrets: SecretVersion[]; mode: string; path?: string; trigger?: AuditTrigger; seconds: number; changedAt?: number; error?: unknown }): void;
  strategyFinished(p: { container: ContainerRef; strategy: string; action?: string; secrets?: SecretVersion[]; seconds: number; error?: unknown }): void;
  rotationFinished(p: { container: ContainerRef; secret: SecretVersion; provider?: string; strategy: string; trigger?: AuditTrigger; error?: unknown }): void;
  reconcilePass(p: { seconds: number; error?: unknown }): void;
  forgetSecret(name: string): void;
}

export interface ReconcilerDeps {
  docker: Dockerode;
  store: SecretStore;
  source: SecretSource;
  /**
   * Reads and writes containers' file sets (the delivery planner; a fake in unit tests). Without
   * `restore`, no previous files can be switched back to (signal rollback reports so).
   */
  planner: Pick<DeliveryPlanner, "readMarker" | "deliver" | "forget"> & Partial<Pick<DeliveryPlanner, "restore" | "prune">>;
  markers: VersionMarkers;
  volumes?: Pick<DsoVolumes, "optionsOf" | "refresh" | "observe" | "markSeen" | "syncUsers">;
  queue: KeyedQueue;
  log: FieldLogger;
  config: () => DsoConfig;
  /** Why a secret has no fingerprint yet, in words (e.g. "first poll in 4m"). */
  pendingReason?: (secret: string) => string;
  observer?: ReconcileObserver;
  /** Secrets used outside containers (Swarm services) that a full pass must not forget. */
  usedElsewhere?: () => Iterable<string>;
}

export interface ConvergeOptions {
  signal?: AbortSignal;
  trigger?: AuditTrigger;
  /** Deliver every file set even when it is current (`dso inject`). */
  force?: boolean;
}
