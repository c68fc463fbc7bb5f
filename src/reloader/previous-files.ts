/**
 * The previous files of a `signal` rotation: the delivery keeps the version each changed target
 * held before (atomic layout, layout.ts) until the strategy has proven the new one. Unhealthy
 * after the signal → switched back; proven (or any other outcome) → pruned, so the previous
 * values stay on the container's tmpfs for the health window only. Nothing is re-fetched: the
 * agent keeps no values (docs/security.md).
 */
import { describeError } from "../errors.ts";
import type { StrategyLogger, RestoreReport } from "./strategies/types.ts";
import type { ReconcilerDeps } from "./reconcile-deps.ts";

/** What a delivery of this pass kept (or why it kept nothing), per target. */
export interface KeptTarget {
  path: string;
  /** The version directory kept beside the new one. */
  kept?: string;
  /** Why none was kept (the mode cannot, or there was none). */
  notKept?: string;
  /** Delivered into the running container in this pass (else nothing to restore). */
  deferred?: boolean;
  /** Set once switched back. */
  restored?: boolean;
}

type Planner = ReconcilerDeps["planner"];

/** Switches every target delivered in this pass back to its kept version; says why where it cannot. */
export async function restorePreviousFiles(planner: Planner, containerId: string, targets: KeptTarget[], signal?: AbortSignal): Promise<RestoreReport> {
  const report: RestoreReport = { restored: [], notRestored: [] };
  for (const target of targets.filter((t) => !t.deferred)) {
    if (!target.kept) {
      report.notRestored.push(`${target.path}: ${target.notKept ?? "no previous version was kept"}`);
      continue;
    }
    if (!planner.restore) {
      report.notRestored.push(`${target.path}: this delivery engine cannot switch back`);
      continue;
    }
    try {
      await planner.restore(containerId, target.path, target.kept, signal);
      target.restored = true;
      report.restored.push(target.path);
    } catch (error) {
      report.notRestored.push(`${target.path}: ${describeError(error)}`);
    }
  }
  return report;
}

/** Drops the kept versions (the new files are proven, or the run is over either way). */
export async function pruneKeptFiles(planner: Planner, containerId: string, targets: KeptTarget[], log: StrategyLogger, signal?: AbortSignal): Promise<void> {
  for (const target of targets) {
    if (!target.kept || target.restored || !planner.prune) continue;
    await planner.prune(containerId, target.path, signal).catch((error: unknown) => {
      log.warn("could not remove the previous version kept for a rollback", { container: containerId.slice(0, 12), path: target.path, error: describeError(error) });
    });
  }
}
