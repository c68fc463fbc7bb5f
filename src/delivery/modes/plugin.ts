/**
 * plugin mode: the target is a DSO volume. Its directory lives on the host under the driver's
 * tmpfs root and is bind-mounted into the container, so rotation is the atomic writer on that
 * directory; no Docker API call touches the files.
 */
import type Dockerode from "dockerode";
import { lstat } from "node:fs/promises";
import { DsoError } from "../../errors.ts";
import { readAtomicMarker, writeAtomicDir } from "../atomic-dir.ts";
import { isRamBacked } from "../tmpfs.ts";
import type { DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

export const pluginMode: DeliveryModeImpl = {
  async deliver(_docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string): Promise<DeliveryResult> {
    const started = performance.now();
    signal?.throwIfAborted();
    const dir = plan.hostPath;
    if (!dir) throw new DsoError("DELIVERY_FAILED", `no host directory known for the DSO volume at ${plan.targetPath}`);
    const stats = await lstat(dir).catch(() => undefined);
    if (!stats?.isDirectory()) throw new DsoError("DELIVERY_FAILED", `the DSO volume for ${plan.targetPath} is not mounted on this host`);
    if (!(await isRamBacked(dir))) throw new DsoError("DELIVERY_REFUSED", `the DSO volume for ${plan.targetPath} is not on tmpfs`);
    const { bytes } = await writeAtomicDir(dir, files, marker);
    return { mode: "plugin", targetPath: plan.targetPath, files: files.map((f) => f.name), bytes, durationMs: performance.now() - started };
  },
  async readMarker(_docker: Dockerode, plan: DeliveryPlan): Promise<string | undefined> {
    if (!plan.hostPath) return undefined;
    return readAtomicMarker(plan.hostPath).catch(() => undefined);
  },
};
