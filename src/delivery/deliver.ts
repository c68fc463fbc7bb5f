/**
 * The one entry point of the delivery engine: pick the mode from the container's mounts, then
 * deliver the file set in the atomic layout. Returns names and sizes, never contents.
 */
import type Dockerode from "dockerode";
import { log } from "../log/logger.ts";
import { assertValidFileSet } from "./file-names.ts";
import { pickDeliveryMode, type PickOptions } from "./mode-picker.ts";
import { execMode } from "./modes/exec.ts";
import { pluginMode } from "./modes/plugin.ts";
import { procfsMode } from "./modes/procfs.ts";
import { volumeMode } from "./modes/volume.ts";
import type { DeliverModeOptions, DeliveryMode, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "./types.ts";

export const MODES: Readonly<Record<DeliveryMode, DeliveryModeImpl>> = {
  plugin: pluginMode,
  volume: volumeMode,
  exec: execMode,
  procfs: procfsMode,
};

export type DeliverOptions = PickOptions;

export async function deliverToContainer(
  docker: Dockerode,
  containerId: string,
  targetPath: string,
  files: readonly SecretFile[],
  opts: DeliverOptions = {},
): Promise<DeliveryResult> {
  const started = performance.now();
  // Refuse bad names before asking the daemon anything.
  assertValidFileSet(files);
  const plan = await pickDeliveryMode(docker, containerId, targetPath, opts);
  const result = await deliverWithPlan(docker, plan, files, opts.signal);
  const total = { ...result, durationMs: performance.now() - started };
  log.debug("secrets delivered", { container: plan.containerId.slice(0, 12), mode: plan.mode, target: plan.targetPath, files: total.files.length, bytes: total.bytes });
  return total;
}

/** Delivers with an already picked plan (rotation into a container whose mounts are known). */
export function deliverWithPlan(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
  return MODES[plan.mode].deliver(docker, plan, files, signal, marker, opts);
}
