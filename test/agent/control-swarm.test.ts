/**
 * `dso rotate` and `dso sync` reach Swarm services too (issue 20: read from the code, a secret only
 * services used waited for the next poll that noticed a change, or the 60 s pass).
 */
import { expect, test } from "bun:test";
import { AgentControl, type ControlDeps } from "../../src/agent/control.ts";

function control(withSwarm: boolean) {
  const calls: string[] = [];
  const side = {
    reconciler: {
      reconcileAll: async (opts: { only?: Set<string>; trigger: string }) => (calls.push(`containers ${opts.trigger} ${[...(opts.only ?? [])].join(",")}`), []),
    },
    swarm: withSwarm
      ? {
          reconcile: async (only?: Set<string>) => (
            calls.push(`services ${[...(only ?? ["*"])].join(",")}`),
            [
              { service: "api", action: "updated", secrets: ["db"] },
              { service: "web", action: "failed", secrets: ["db"], error: "secret \"db\" is not available" },
            ]
          ),
        }
      : undefined,
  };
  const deps = {
    docker: async () => side,
    side: () => side,
    secrets: { store: { get: (name: string) => (name === "db" ? {} : undefined) } },
  } as unknown as ControlDeps;
  return { api: new AgentControl(deps), calls };
}

test("dso rotate runs the Swarm pass for the secret and reports each service", async () => {
  const { api, calls } = control(true);
  const reports = await api.rotate("db");
  expect(calls.sort()).toEqual(["containers rotate db", "services db"]);
  expect(reports).toEqual([
    { container: "service api", name: "api", delivered: ["db"], action: "replaced" },
    { container: "service web", name: "web", delivered: [], error: 'secret "db" is not available' },
  ]);
});

test("dso sync runs the Swarm pass for every service; without Swarm only containers", async () => {
  const swarm = control(true);
  await swarm.api.sync();
  expect(swarm.calls.sort()).toEqual(["containers sync ", "services *"]);
  const plain = control(false);
  expect(await plain.api.rotate("db")).toEqual([]);
  expect(plain.calls).toEqual(["containers rotate db"]);
});

test("a Swarm pass that fails is one report of its own; the containers' reports are kept", async () => {
  const side = {
    reconciler: { reconcileAll: async () => [{ container: "abc", name: "web", delivered: ["db"], action: "restarted" as const }] },
    swarm: { reconcile: async () => Promise.reject(new Error("This node is not a swarm manager.")) },
  };
  const deps = { docker: async () => side, side: () => side, secrets: { store: { get: () => ({}) } } } as unknown as ControlDeps;
  const reports = await new AgentControl(deps).rotate("db");
  expect(reports).toEqual([
    { container: "abc", name: "web", delivered: ["db"], action: "restarted" },
    { container: "service (swarm)", name: "(swarm)", delivered: [], error: "This node is not a swarm manager." },
  ]);
});
