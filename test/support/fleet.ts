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

/** Idle without waking: `wait` returns on TERM at once, and 1,000 members cost no forks a second. */
const IDLE = 'trap "exit 0" TERM; while true; do sleep 3600 & wait; done';
/** The anchor whose network namespace each member joins, by member id (removed with the last). */
const anchorOf = new Map<string, string>();

/**
 * `count` members, started `concurrency` at a time. They join one anchor container's empty
 * network namespace (`container:<anchor>`, the anchor itself `none`): dockerd then skips its
 * libnetwork-setkey hook, which costs ~0.5 s of each start here (0.27 s a start instead of
 * 0.7–0.8 s, measured with `docker start`). Delivery never touches the network.
 */
export async function startFleet(
  docker: Dockerode,
  count: number,
  options: { prefix: string; labels: Record<string, string>; concurrency?: number; tmpfs?: string },
): Promise<FleetMember[]> {
  if (count === 0) return [];
  const anchor = await docker.createContainer({
    name: `${options.prefix}-netns-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", IDLE],
    HostConfig: { NetworkMode: "none" },
  });
  const created: string[] = [];
  try {
    await anchor.start();
    const indexes = Array.from({ length: count }, (_, i) => i);
    return await mapLimit(indexes, options.concurrency ?? 6, async (i) => {
      const c = await docker.createContainer({
        name: `${options.prefix}-${i}-${process.pid}`,
        Image: BUSYBOX_IMAGE,
        Cmd: ["sh", "-c", IDLE],
        Labels: options.labels,
        HostConfig: { NetworkMode: `container:${anchor.id}`, Tmpfs: { "/run/secrets": options.tmpfs ?? "rw,mode=0755,size=64k" } },
      });
      created.push(c.id);
      anchorOf.set(c.id, anchor.id);
      await c.start();
      return { id: c.id, pid: (await c.inspect()).State.Pid };
    });
  } catch (error) {
    // The caller never sees a fleet that failed to start: remove what was made of it.
    await removeFleet(docker, created.map((id) => ({ id, pid: 0 })));
    await anchor.remove({ force: true }).catch(() => {});
    throw error;
  }
}

/** Removes the members, then each anchor none of the remaining members still uses. */
export async function removeFleet(docker: Dockerode, fleet: FleetMember[], concurrency = 8): Promise<void> {
  await mapLimit(fleet, concurrency, (m) => docker.getContainer(m.id).remove({ force: true }).catch(() => {}));
  const freed = new Set(fleet.map((m) => anchorOf.get(m.id)).filter((a): a is string => a !== undefined));
  for (const m of fleet) anchorOf.delete(m.id);
  for (const a of anchorOf.values()) freed.delete(a);
  await mapLimit([...freed], concurrency, (a) => docker.getContainer(a).remove({ force: true }).catch(() => {}));
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
