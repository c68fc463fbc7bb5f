/**
 * The delivery engine as the agent (and `dso inject` without an agent) uses it: each container's
 * mode plan remembered per target path, the facts about the daemon that shape the plan, and the
 * version marker read back through the same plan. Picking a mode costs an inspect and, for
 * --tmpfs targets without procfs, an exec probe for tar; a plan is dropped when its container
 * (re)starts or dies, and picked again once when using it fails.
 */
import type Dockerode from "dockerode";
import { basename } from "node:path";
import { DEFAULT_SOCKET_PATH } from "../config/defaults.ts";
import { DsoError } from "../errors.ts";
import { deliverWithPlan, MODES } from "./deliver.ts";
import { assertValidFileSet } from "./file-names.ts";
import { pickDeliveryMode } from "./mode-picker.ts";
import type { DeliveryPlan, DeliveryResult, SecretFile } from "./types.ts";

/** With userns-remap, ids written from the host are not the ids the container sees. */
export async function remapsUserNamespaces(docker: Dockerode): Promise<boolean> {
  const info = (await docker.info().catch(() => ({}))) as { SecurityOptions?: string[] };
  return (info.SecurityOptions ?? []).some((option) => option.includes("name=userns"));
}

/** dockerd names a legacy plugin after its socket file in /run/docker/plugins: dso.sock → "dso". */
export function pluginDriverName(socketPath: string = DEFAULT_SOCKET_PATH): string {
  return basename(socketPath).replace(/\.sock$/, "") || "dso";
}

export interface PlannerOptions {
  /** Volume driver names that are DSO. */
  pluginDrivers: string[];
  preferProcfs: boolean;
  /** Tmpfs local volumes by their mountpoint or /proc/<pid>/root; off under userns-remap. */
  writeVolumesDirectly: boolean;
  /** The host directory of a mounted DSO volume, from the agent's volume driver when it runs. */
  pluginVolumeDir?: (volume: string) => string | undefined;
}

export interface DeliverOptions {
  signal?: AbortSignal;
  /** The version marker written beside the files (secrets/version-marker.ts). */
  marker?: string;
  /** Keep the version the target held before, until `prune` or `restore` (DeliveryModeImpl). */
  keepPrevious?: boolean;
}

/** The planner's options for a daemon: the same for the agent and for a direct `dso inject`. */
export async function plannerOptionsFor(docker: Dockerode, socketPath: string | undefined, pluginVolumeDir?: PlannerOptions["pluginVolumeDir"]): Promise<PlannerOptions> {
  const hostIdsAreContainerIds = !(await remapsUserNamespaces(docker));
  return { pluginDrivers: [pluginDriverName(socketPath)], preferProcfs: hostIdsAreContainerIds, writeVolumesDirectly: hostIdsAreContainerIds, pluginVolumeDir };
}

export class DeliveryPlanner {
  private readonly plans = new Map<string, DeliveryPlan>();
  /** Whether a container's image has tar: an image never changes, so the probe runs once per container. */
  private readonly tarProbeCache = new Map<string, boolean>();

  constructor(
    private readonly docker: Dockerode,
    private readonly options: PlannerOptions,
  ) {}

  /** Forget what was planned for a container (it started, died or was removed). */
  invalidate(containerId: string): void {
    for (const key of this.plans.keys()) if (key.startsWith(`${containerId}\0`)) this.plans.delete(key);
  }

  /** Forget every plan (after the event stream was lost: start and die events may be missed). */
  invalidateAll(): void {
    this.plans.clear();
  }

  forget(containerId: string): void {
    this.invalidate(containerId);
    this.tarProbeCache.delete(containerId);
  }

  private async plan(containerId: string, targetPath: string, signal?: AbortSignal): Promise<DeliveryPlan> {
    const key = `${containerId}\0${targetPath}`;
    const known = this.plans.get(key);
    if (known) return known;
    const plan = await pickDeliveryMode(this.docker, containerId, targetPath, { signal, tarProbeCache: this.tarProbeCache, ...this.options });
    this.plans.set(key, plan);
    return plan;
  }

  async deliver(containerId: string, targetPath: string, files: readonly SecretFile[], opts: DeliverOptions = {}): Promise<DeliveryResult> {
    assertValidFileSet(files);
    const key = `${containerId}\0${targetPath}`;
    // A stale plan fails (procfs mode re-checks the PID itself) and is picked again once.
    const known = this.plans.get(key);
    if (known) {
      try {
        return await deliverWithPlan(this.docker, known, files, opts.signal, opts.marker, opts);
      } catch {
        this.plans.delete(key);
      }
    }
    return deliverWithPlan(this.docker, await this.plan(containerId, targetPath, opts.signal), files, opts.signal, opts.marker, opts);
  }

  /**
   * Switches a target back to the version a `keepPrevious` delivery kept. Throws with the reason
   * when the target's mode cannot (the caller reports that the previous files were not restored).
   */
  async restore(containerId: string, targetPath: string, version: string, signal?: AbortSignal): Promise<void> {
    const plan = await this.plan(containerId, targetPath, signal);
    const mode = MODES[plan.mode];
    if (!mode.restore) throw new DsoError("DELIVERY_FAILED", `${plan.mode} mode cannot switch back to a previous version`);
    await mode.restore(this.docker, plan, version, signal);
  }

  /** Drops every version of a target but the current one; nothing for a mode that keeps none. */
  async prune(containerId: string, targetPath: string, signal?: AbortSignal): Promise<void> {
    const plan = await this.plan(containerId, targetPath, signal);
    await MODES[plan.mode].prune?.(this.docker, plan, signal);
  }

  /** The marker of what the target holds now, and the mode it is reached by. */
  async readMarker(containerId: string, targetPath: string, signal?: AbortSignal): Promise<{ marker?: string; mode: DeliveryPlan["mode"] }> {
    const plan = await this.plan(containerId, targetPath, signal);
    try {
      return { marker: await MODES[plan.mode].readMarker(this.docker, plan, signal), mode: plan.mode };
    } catch (error) {
      this.plans.delete(`${containerId}\0${targetPath}`);
      throw error;
    }
  }
}
