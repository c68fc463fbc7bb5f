import type Dockerode from "dockerode";
import type { SignalName, StrategyName } from "../../config/types.ts";
import type { FieldLogger } from "../../log/logger.ts";

export type StrategyLogger = Pick<FieldLogger, "info" | "warn">;

export interface StrategyContext {
  docker: Dockerode;
  containerId: string;
  containerName: string;
  signal: SignalName;
  healthCheckTimeoutMs: number;
  /** Deliver the container's current secrets into a container (the same or a replacement). */
  deliver(containerId: string): Promise<void>;
  /** Environment variables to set on a replacement (env injection); empty when none. */
  env: Record<string, string>;
  /** Labels to set on a replacement (the env injection version marker); empty when none. */
  labels: Record<string, string>;
  /** Where DSO writes this container's secrets (file targets, DSO volumes): not the app's data. */
  secretPaths: readonly string[];
  log: StrategyLogger;
  abort: AbortSignal;
  /**
   * Switches the file targets this pass changed back to the versions kept before it (the
   * delivery kept them for `signal`), dropping the new ones. Never re-fetches: DSO keeps no values.
   */
  restorePrevious(): Promise<RestoreReport>;
}

/** What `restorePrevious` did, per target path; `notRestored` entries say why (no values). */
export interface RestoreReport {
  restored: string[];
  notRestored: string[];
}

export type StrategyAction = "files-only" | "signalled" | "restarted" | "replaced" | "escalated-to-restart";

/** What a strategy did; idempotent strategies report what they did this time. */
export interface StrategyResult {
  strategy: StrategyName;
  action: StrategyAction;
  /** The container that now serves: a new id after `rolling`. */
  containerId: string;
  detail?: string;
}

export interface Strategy {
  name: StrategyName;
  /** Runs after the new files are in place (the reloader delivers first). */
  apply(ctx: StrategyContext): Promise<StrategyResult>;
}
