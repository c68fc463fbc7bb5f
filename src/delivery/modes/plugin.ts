/**
 * plugin mode: the target is a DSO volume. Its directory lives on the host under the driver's
 * tmpfs root and is bind-mounted into the container, so rotation is the atomic writer on that
 * directory; no Docker API call touches the files.
 */
import type Dockerode from "dockerode";
import { lstat } from "node:fs/promises";
import { DsoError } from "../../errors.ts";
import { keptOrWhy, pruneAtomicDir, readAtomicMarker, restoreAtomicVersion, writeAtomicDir } from "../atomic-dir.ts";
import { isRamBacked } from "../tmpfs.ts";
import type { DeliverModeOptions, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

/** Runs `use` on the DSO volume's host directory, once it is known to be mounted and on tmpfs. */
async function withVolumeDir<T>(plan: DeliveryPlan, use: (dir: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  const dir = plan.hostPath;
  if (!dir) throw new DsoError("DELIVERY_FAILED", `no host directory known for the DSO volume at ${plan.targetPath}`);
  const stats = await lstat(dir).catch(() => undefined);
  if (!stats?.isDirectory()) throw new DsoError("DELIVERY_FAILED", `the DSO volume for ${plan.targetPath} is not mounted on this host`);
  if (!(await isRamBacked(dir))) throw new DsoError("DELIVERY_REFUSED", `the DSO volume for ${plan.targetPath} is not on tmpfs`);
  return use(dir);
}

export const pluginMode: DeliveryModeImpl = {
  async deliver(_docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
    const started = performance.now();
    const { bytes, kept } = await withVolumeDir(plan, (dir) => writeAtomicDir(dir, files, marker, opts), signal);
    return { mode: "plugin", targetPath: plan.targetPath, files: files.map((f) => f.name), bytes, durationMs: performance.now() - started, ...keptOrWhy(opts, kept) };
  },
  restore(_docker: Dockerode, plan: DeliveryPlan, version: string, signal?: AbortSignal): Promise<void> {
    return withVolumeDir(plan, (dir) => restoreAtomicVersion(dir, version), signal);
  },
  prune(_docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<void> {
    return withVolumeDir(plan, (dir) => pruneAtomicDir(dir), signal);
  },
  async readMarker(_docker: Dockerode, plan: DeliveryPlan): Promise<string | undefined> {
    if (!plan.hostPath) return undefined;
    return readAtomicMarker(plan.hostPath).catch(() => undefined);
  },
};
