/**
 * procfs mode, for `--tmpfs` targets in images without tar (distroless): the agent, root in the
 * host's PID namespace, writes through /proc/<pid>/root/<target> with the atomic writer. The path
 * is resolved inside the container's root only (container-root.ts), and the directory must be
 * RAM-backed as seen from here, so nothing lands on the container's disk layer either.
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { keptOrWhy, pruneAtomicDir, readAtomicMarker, restoreAtomicVersion, writeAtomicDir } from "../atomic-dir.ts";
import { processStartTime } from "../container-process.ts";
import { openDirInRoot } from "../container-root.ts";
import { isRamBacked } from "../tmpfs.ts";
import type { DeliverModeOptions, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

/** Where the host's /proc is; tests and odd setups (agent in a container with /host/proc) can differ. */
export const PROC_ROOT = "/proc";

export function containerRootPath(pid: number): string {
  return `${PROC_ROOT}/${pid}/root`;
}

const RESTARTED = "the container restarted while secrets were being delivered; deliver again";

/** The plan recorded a start time and its PID now names another process, or none. */
async function processChanged(plan: DeliveryPlan): Promise<boolean> {
  return plan.pidStart !== undefined && (await processStartTime(PROC_ROOT, plan.pid!)) !== plan.pidStart;
}

/** By the start time the plan recorded (no Docker call), else by an inspect as before. */
async function confirmPlannedProcess(docker: Dockerode, plan: DeliveryPlan): Promise<void> {
  if (plan.pidStart !== undefined) {
    if (await processChanged(plan)) throw new DsoError("DELIVERY_FAILED", RESTARTED);
    return;
  }
  const state = (await docker.getContainer(plan.containerId).inspect()).State;
  if (!state.Running || state.Pid !== plan.pid) throw new DsoError("DELIVERY_FAILED", RESTARTED);
}

/**
 * Runs `use` on the target directory, opened inside the container's root, once the PID is known
 * to still be the planned process and the directory is RAM-backed.
 */
async function withTargetDir<T>(docker: Dockerode, plan: DeliveryPlan, use: (path: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  if (!plan.pid) throw new DsoError("DELIVERY_FAILED", "procfs delivery needs the container's PID; is it running?");
  const dir = await openDirInRoot(containerRootPath(plan.pid), plan.targetPath).catch(async (error: unknown) => {
    // A root that vanished with its process is a stopped or restarted container, not a refusal.
    if (await processChanged(plan)) throw new DsoError("DELIVERY_FAILED", RESTARTED);
    throw error;
  });
  try {
    // The directory is now held open. If the PID still names the planned process, it was this
    // container's root when we opened it (a reused PID would have failed this).
    await confirmPlannedProcess(docker, plan);
    if (!(await isRamBacked(dir.path))) {
      throw new DsoError("DELIVERY_REFUSED", `${plan.targetPath} in the container is not on tmpfs`, {
        hint: `add --tmpfs ${plan.targetPath} to the container, or use a dso volume`,
      });
    }
    return await use(dir.path);
  } finally {
    await dir.close();
  }
}

export const procfsMode: DeliveryModeImpl = {
  async deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
    const started = performance.now();
    const { bytes, kept } = await withTargetDir(docker, plan, (path) => writeAtomicDir(path, files, marker, opts), signal);
    return { mode: "procfs", targetPath: plan.targetPath, files: files.map((f) => f.name), bytes, durationMs: performance.now() - started, ...keptOrWhy(opts, kept) };
  },
  restore(docker: Dockerode, plan: DeliveryPlan, version: string, signal?: AbortSignal): Promise<void> {
    return withTargetDir(docker, plan, (path) => restoreAtomicVersion(path, version), signal);
  },
  prune(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<void> {
    return withTargetDir(docker, plan, (path) => pruneAtomicDir(path), signal);
  },
  /**
   * No Docker call: the plan's PID is dropped by the agent when the container starts or dies, and
   * a PID reused by another process has another start time (a plan without one: at worst one
   * extra delivery, or a reused PID's root with the same layout read as this container's).
   */
  async readMarker(_docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<string | undefined> {
    signal?.throwIfAborted();
    if (!plan.pid) return undefined;
    const dir = await openDirInRoot(containerRootPath(plan.pid), plan.targetPath);
    try {
      // Another process at that PID (a container with the same target and version) is not this one.
      if (await processChanged(plan)) return undefined;
      return await readAtomicMarker(dir.path);
    } finally {
      await dir.close();
    }
  },
};
