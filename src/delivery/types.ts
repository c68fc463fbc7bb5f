/**
 * The one contract of the delivery engine. Every mode takes the same file set and produces the
 * same layout in the container (see atomic-dir.ts), so the agent does not care which mode ran.
 */
import type Dockerode from "dockerode";

/** One file to deliver. `content` is the secret: it never reaches a log, an error or argv. */
export interface SecretFile {
  /** A plain file name (no directories); see file-names.ts for what is refused. */
  name: string;
  content: Uint8Array;
  /** Permission bits, e.g. 0o400. */
  mode: number;
  uid: number;
  gid: number;
}

export type DeliveryMode = "plugin" | "volume" | "exec" | "procfs";

/** What mode-picker decided for one container and target path. */
export interface DeliveryPlan {
  containerId: string;
  /** Absolute, normalised path inside the container. */
  targetPath: string;
  mode: DeliveryMode;
  /** Why this mode, for logs and `dso inject` output (no secret values). */
  reason: string;
  /** Host-side directory of the mount backing the target (plugin mode: the driver's dir). */
  hostPath?: string;
  /** The container's main PID as the daemon reports it (procfs mode). */
  pid?: number;
  /**
   * That process's start time when the plan was made (container-process.ts): a delivery compares
   * it instead of asking Docker again. Absent: the delivery re-checks the PID with an inspect.
   */
  pidStart?: string;
}

export interface DeliveryResult {
  mode: DeliveryMode;
  targetPath: string;
  /** Names only, never contents. */
  files: string[];
  bytes: number;
  durationMs: number;
  /** With `keepPrevious`: the version kept beside the new one, to switch back to (layout.ts). */
  kept?: string;
  /** With `keepPrevious`: why no previous version could be kept (the mode cannot, or there was none). */
  notKept?: string;
}

export interface DeliverModeOptions {
  /** Keep the version the target held before until `prune` (or `restore` to it). */
  keepPrevious?: boolean;
}

export interface DeliveryModeImpl {
  /** Writes the file set, with `marker` (an opaque version marker, layout.ts) beside it when given. */
  deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult>;
  /** Switches the target back to a version kept by `deliver` with `keepPrevious`; drops the others. */
  restore?(docker: Dockerode, plan: DeliveryPlan, version: string, signal?: AbortSignal): Promise<void>;
  /** Drops every version but the current one (a kept one, once the new one is proven). */
  prune?(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<void>;
  /** The marker of the version the target holds now, read from the container; undefined = none. */
  readMarker(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<string | undefined>;
}

/** Default permission bits for a delivered secret when neither config nor labels say otherwise. */
export const DEFAULT_SECRET_MODE = 0o400;
/** Version directories are traversable by the container's user; the files carry the real mode. */
export const VERSION_DIR_MODE = 0o755;
