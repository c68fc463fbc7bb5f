/**
 * How the agent delivers: the delivery engine with each container's mode plan remembered, and
 * the facts about the daemon that shape the plan.
 */
import type Dockerode from "dockerode";
import { basename } from "node:path";
import { deliverWithPlan } from "../delivery/deliver.ts";
import { assertValidFileSet } from "../delivery/file-names.ts";
import { pickDeliveryMode } from "../delivery/mode-picker.ts";
import type { DeliveryPlan } from "../delivery/types.ts";
import type { DeliverFiles } from "../reloader/reloader.ts";

/** With userns-remap, ids written from the host are not the ids the container sees. */
export async function remapsUserNamespaces(docker: Dockerode): Promise<boolean> {
  const info = (await docker.info().catch(() => ({}))) as { SecurityOptions?: string[] };
  return (info.SecurityOptions ?? []).some((option) => option.includes("name=userns"));
}

/** dockerd names a legacy plugin after its socket file in /run/docker/plugins: dso.sock → "dso". */
export function pluginDriverName(socketPath: string): string {
  return basename(socketPath).replace(/\.sock$/, "") || "dso";
}

/**
 * Delivery with the mode plan remembered per container and path: picking a mode costs an
 * inspect and, for --tmpfs targets, an exec probe for tar. A plan is dropped when its container
 * (re)starts, and re-picked once when delivering with it fails.
 */
export class PlannedDelivery {
  private readonly plans = new Map<string, DeliveryPlan>();
  constructor(
    private readonly docker: Dockerode,
    private readonly options: { pluginDrivers: string[]; preferProcfs: boolean; pluginVolumeDir: (volume: string) => string | undefined },
  ) {}

  invalidate(containerId: string): void {
    for (const key of this.plans.keys()) if (key.startsWith(`${containerId}\0`)) this.plans.delete(key);
  }

  readonly deliver: DeliverFiles = async (containerId, targetPath, files, signal) => {
    assertValidFileSet(files);
    const key = `${containerId}\0${targetPath}`;
    // A stale plan fails (procfs mode re-checks the PID itself) and is picked again once.
    const known = this.plans.get(key);
    if (known) {
      try {
        return await deliverWithPlan(this.docker, known, files, signal);
      } catch {
        this.plans.delete(key);
      }
    }
    const plan = await pickDeliveryMode(this.docker, containerId, targetPath, { signal, ...this.options });
    const result = await deliverWithPlan(this.docker, plan, files, signal);
    this.plans.set(key, plan);
    return result;
  };
}
