/**
 * dso doctor's procfs probe looks at a container DSO serves, never the one doctor runs in (issue
 * 22: inside the agent's container it probed the agent itself and warned about --pid host).
 */
import { expect, test } from "bun:test";
import { ownContainerId, probeTarget } from "../../src/doctor/delivery-modes.ts";

const SELF = "a".repeat(64);
const SERVED = "b".repeat(64);
const OTHER = "c".repeat(64);

test("the container doctor runs in is found from its own mounts", () => {
  expect(ownContainerId(`1 2 0:1 /var/lib/docker/containers/${SELF}/hostname /etc/hostname rw - ext4 /dev/sda rw`)).toBe(SELF);
  expect(ownContainerId("1 2 0:1 / / rw - ext4 /dev/sda rw")).toBeUndefined();
});

test("a labelled container first, never itself", async () => {
  const calls: unknown[] = [];
  const docker = (labelled: string[], all: string[]) => ({
    listContainers: async (opts: { filters?: unknown }) => (calls.push(opts.filters), (opts.filters ? labelled : all).map((Id) => ({ Id }))),
  });
  const signal = AbortSignal.timeout(1000);
  expect((await probeTarget(docker([SELF, SERVED], [SELF]) as never, signal, SELF))?.Id).toBe(SERVED);
  expect((await probeTarget(docker([SELF], [SELF, OTHER]) as never, signal, SELF))?.Id).toBe(OTHER);
  expect(await probeTarget(docker([SELF], [SELF]) as never, signal, SELF)).toBeUndefined();
  expect(calls[0]).toEqual({ label: ["dso.reloader=true"] });
});
