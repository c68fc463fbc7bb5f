/** Which stopped containers the agent starts again after dockerd gave up on its volume driver. */
import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { failedOnOurDriver, isOurDriver, policyWantsRunning, reviveStrandedContainers } from "../../src/agent/revive.ts";

const NOT_FOUND = 'error while mounting volume "": get app-secrets: error looking up volume plugin dso: plugin "dso" not found';

describe("revive decisions", () => {
  test("restart policies that want the container running", () => {
    expect(policyWantsRunning({ policy: "always", maxRetries: 0, restartCount: 9 })).toBe(true);
    expect(policyWantsRunning({ policy: "unless-stopped", maxRetries: 0, restartCount: 0 })).toBe(true);
    expect(policyWantsRunning({ policy: "on-failure", maxRetries: 0, restartCount: 5 })).toBe(true);
    expect(policyWantsRunning({ policy: "on-failure", maxRetries: 3, restartCount: 2 })).toBe(true);
    expect(policyWantsRunning({ policy: "on-failure", maxRetries: 3, restartCount: 3 })).toBe(false);
    expect(policyWantsRunning({ policy: "no", maxRetries: 0, restartCount: 0 })).toBe(false);
    expect(policyWantsRunning({ policy: "", maxRetries: 0, restartCount: 0 })).toBe(false);
  });

  test("driver names, with a managed plugin's tag", () => {
    expect(isOurDriver("dso", ["dso"])).toBe(true);
    expect(isOurDriver("dso:latest", ["dso"])).toBe(true);
    expect(isOurDriver("dsox", ["dso"])).toBe(false);
    expect(isOurDriver("local", ["dso"])).toBe(false);
  });

  test("only a start that failed on our driver being absent", () => {
    expect(failedOnOurDriver(NOT_FOUND, ["dso"])).toBe(true);
    expect(failedOnOurDriver('plugin "dso:latest" found but disabled', ["dso"])).toBe(true);
    expect(failedOnOurDriver("dial unix /run/docker/plugins/dso.sock: connect: connection refused", ["dso"])).toBe(true);
    expect(failedOnOurDriver('plugin "other" not found', ["dso"])).toBe(false);
    expect(failedOnOurDriver("OCI runtime create failed: exec: \"app\": executable file not found in $PATH", ["nope"])).toBe(false);
    expect(failedOnOurDriver("", ["dso"])).toBe(false);
    expect(failedOnOurDriver("plugin dsox:1 found but disabled", ["dsox"])).toBe(true);
    expect(failedOnOurDriver("plugin dso not found", ["dso"])).toBe(true);
    // Errors that merely contain the name and "not found" / "no such file" are not ours.
    expect(failedOnOurDriver("network dsonet not found", ["dso"])).toBe(false);
    expect(failedOnOurDriver('exec: "/usr/local/bin/dso-worker": stat /usr/local/bin/dso-worker: no such file or directory', ["dso"])).toBe(false);
    expect(failedOnOurDriver("error mounting \"/run/dso/volumes/cv3\" to rootfs: stat /run/dso/volumes/cv3: no such file or directory", ["dso"])).toBe(false);
    expect(failedOnOurDriver('plugin "dsox" not found', ["dso"])).toBe(false);
  });
});

interface Fake {
  id: string;
  driver: string;
  policy: string;
  error: string;
  running?: boolean;
}

function fakeDocker(fakes: Fake[], started: string[]): Dockerode {
  return {
    listContainers: async () => fakes.map((f) => ({ Id: f.id, Mounts: [{ Type: "volume", Driver: f.driver }] })),
    getContainer: (id: string) => {
      const f = fakes.find((x) => x.id === id)!;
      return {
        inspect: async () => ({
          Id: f.id,
          Name: `/${f.id}`,
          RestartCount: 0,
          State: { Running: f.running ?? false, Restarting: false, Error: f.error },
          HostConfig: { RestartPolicy: { Name: f.policy, MaximumRetryCount: 0 } },
        }),
        start: async () => {
          started.push(id);
        },
      };
    },
  } as unknown as Dockerode;
}

describe("reviveStrandedContainers", () => {
  test("starts each stranded DSO-volume container once, and nothing else", async () => {
    const started: string[] = [];
    const events: string[] = [];
    const logs: string[] = [];
    const docker = fakeDocker(
      [
        { id: "stranded", driver: "dso", policy: "always", error: NOT_FOUND },
        { id: "unless", driver: "dso", policy: "unless-stopped", error: NOT_FOUND },
        { id: "no-policy", driver: "dso", policy: "no", error: NOT_FOUND },
        { id: "app-error", driver: "dso", policy: "always", error: "OCI runtime create failed" },
        { id: "other-driver", driver: "local", policy: "always", error: 'plugin "local" not found' },
        { id: "running", driver: "dso", policy: "always", error: NOT_FOUND, running: true },
      ],
      started,
    );
    const revived = await reviveStrandedContainers({
      docker,
      drivers: ["dso"],
      log: { info: (m) => logs.push(m), warn: (m) => logs.push(m) },
      onRevived: (p) => events.push(p.container.name ?? ""),
    });
    expect(started).toEqual(["stranded", "unless"]);
    expect(revived).toEqual(["stranded", "unless"]);
    expect(events).toEqual(["stranded", "unless"]);
    expect(logs.filter((l) => l.includes("left dead"))).toHaveLength(2);
  });

  test("a Docker error is a warning, never a throw", async () => {
    const logs: string[] = [];
    const docker = { listContainers: async () => Promise.reject(new Error("daemon gone")) } as unknown as Dockerode;
    expect(await reviveStrandedContainers({ docker, drivers: ["dso"], log: { info: () => {}, warn: (m) => logs.push(m) } })).toEqual([]);
    expect(logs).toHaveLength(1);
  });
});
