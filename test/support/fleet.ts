/**
 * Many small labelled containers for scale tests and benches: busybox, no network, a tmpfs at
 * /run/secrets, created a few at a time; and a rotation wave measured from the host through each
 * container's /proc/<pid>/root (no docker exec, so measuring costs the daemon nothing).
 */
import type Dockerode from "dockerode";
import { mapLimit } from "../../src/util/map-limit.ts";
import { readInside } from "./agent-probe.ts";
import { BUSYBOX_IMAGE } from "./test-images.ts";

export interface FleetMember {
  id: string;
  pid: number;
}

const IDLE = 'trap "exit 0" TERM; while true; do sleep 10; done';

export async function startFleet(
  docker: Dockerode,
  count: number,
  options: { prefix: string; labels: Record<string, string>; concurrency?: number; tmpfs?: string },
): Promise<FleetMember[]> {
  const indexes = Array.from({ length: count }, (_, i) => i);
  return mapLimit(indexes, options.concurrency ?? 6, async (i) => {
    const c = await docker.createContainer({
      name: `${options.prefix}-${i}-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", IDLE],
      Labels: options.labels,
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": options.tmpfs ?? "rw,mode=0755,size=64k" } },
    });
    await c.start();
    return { id: c.id, pid: (await c.inspect()).State.Pid };
  });
}

export async function removeFleet(docker: Dockerode, fleet: FleetMember[], concurrency = 8): Promise<void> {
  await mapLimit(fleet, concurrency, (m) => docker.getContainer(m.id).remove({ force: true }).catch(() => {}));
}

/**
 * Milliseconds from `startedAt` (performance.now()) until each member shows `value` at `path`;
 * `onTick` runs every round (sampling RSS and CPU). Members that never do are counted as missing.
 */
export async function waitForValue(
  fleet: FleetMember[],
  path: string,
  value: string,
  options: { startedAt: number; timeoutMs: number; onTick?: () => void },
): Promise<{ latencies: number[]; missing: number }> {
  const latencies: number[] = [];
  const pending = new Set(fleet);
  const deadline = options.startedAt + options.timeoutMs;
  while (pending.size && performance.now() < deadline) {
    for (const m of [...pending]) {
      if (readInside(m.pid, path) === value) {
        latencies.push(performance.now() - options.startedAt);
        pending.delete(m);
      }
    }
    options.onTick?.();
    await Bun.sleep(20);
  }
  return { latencies, missing: pending.size };
}
