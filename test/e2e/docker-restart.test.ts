/**
 * dockerd restarts under a running agent: the event stream drops, the agent reconnects, and its
 * reconcile puts the secrets back into containers the daemon restarted (their tmpfs came back
 * empty, and their start events may have been missed).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker, restartDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const VALUE = "restart-planted-ECHO-2Lm6";
let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let containerId: string;
const extra: string[] = [];

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-restart-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "token"), VALUE);
  await writeFile(join(dir, "dso.yaml"), `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  watch:\n    polling_interval: 1s\n`);
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
  const c = await docker.createContainer({
    name: `e2e-dockerd-restart-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
    Labels: { "dso.reloader": "true", "dso.secrets": "token" },
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" }, RestartPolicy: { Name: "always" } },
  });
  containerId = c.id;
  await c.start();
});

afterAll(async () => {
  await agent?.stop("SIGKILL");
  for (const id of [containerId, ...extra]) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

const tokenIn = async () => {
  const r = await execIn(docker, containerId, ["cat", "/run/secrets/token"]);
  return r.code === 0 ? r.stdout : undefined;
};

describe("dockerd restart under the agent", () => {
  test("the agent reconnects and reconciles the restarted container", async () => {
    expect(await eventually("first delivery", tokenIn)).toBe(VALUE);
    const startedBefore = (await docker.getContainer(containerId).inspect()).State.StartedAt;
    // While dockerd is down the agent still answers on its socket, and says it is disconnected.
    let whileDown: { code: number; connected?: boolean } | undefined;
    await restartDocker({
      whileStopped: async () => {
        const r = await agent.cli(["status", "--json"]);
        whileDown = { code: r.code, connected: (JSON.parse(r.stdout || "{}") as { agent?: { docker?: { connected: boolean } } }).agent?.docker?.connected };
      },
    });
    // Started right after dockerd is back, before the agent's event stream reconnects (it backs off).
    const late = await docker.createContainer({
      name: `e2e-dockerd-late-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
      Labels: { "dso.reloader": "true", "dso.secrets": "token" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" } },
    });
    extra.push(late.id);
    await late.start();
    const reconnectedBeforeLate = /docker event stream reconnected/.test(agent.logs());
    expect(whileDown).toEqual({ code: 0, connected: false });
    await eventually("container restarted by the daemon", async () => {
      const s = (await docker.getContainer(containerId).inspect()).State;
      return s.Running && s.StartedAt !== startedBefore ? true : undefined;
    });
    expect(await eventually("secrets back after the restart", tokenIn, 40_000)).toBe(VALUE);
    await agent.waitForLog(/docker event stream lost/);
    await agent.waitForLog(/docker event stream reconnected/);
    const lateToken = await eventually("the container started before the agent reconnected gets its secret", async () => {
      const r = await execIn(docker, late.id, ["cat", "/run/secrets/token"]);
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(lateToken).toBe(VALUE);
    console.log(`dockerd restart: a container started ${reconnectedBeforeLate ? "after" : "before"} the agent reconnected got its secret`);
    expect(agent.proc.exitCode).toBeNull();
    expect(agent.logs()).not.toContain(VALUE);
  });
});
