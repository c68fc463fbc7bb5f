/**
 * Plugin mode end to end: the compiled agent serves the Docker volume-driver protocol on its
 * socket in /run/docker/plugins; dockerd calls Mount before the container starts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const VALUE_ONE = "plugin-planted-ONE-4c9f";
const VALUE_TWO = "plugin-planted-TWO-8d1e";
const DRIVER = `dso-e2e-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";

let docker: Dockerode;
let dir: string;
let volumesRoot: string;
let agent: AgentProcess;
const containers: string[] = [];
const volumes: string[] = [];

async function logsOf(c: Dockerode.Container): Promise<string> {
  return ((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

async function volume(name: string, secrets: string): Promise<string> {
  const full = `${name}-${process.pid}`;
  await docker.createVolume({ Name: full, Driver: DRIVER, DriverOpts: { secrets, mode: "0440" } });
  volumes.push(full);
  return full;
}

async function container(name: string, vol: string, script: string): Promise<Dockerode.Container> {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", script],
    HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
  });
  containers.push(c.id);
  return c;
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-plugin-e2e-"));
  volumesRoot = join(dir, "volumes");
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "db_password"), VALUE_ONE);
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  volumes_root: ${volumesRoot}\n  watch:\n    polling_interval: 1s\n`,
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host, name: DRIVER });
  // The agent's socket must be where dockerd looks for legacy plugins.
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
});

afterAll(async () => {
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  await agent?.stop("SIGTERM");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
});

describe("plugin mode through the agent socket", () => {
  test("secrets are in the volume before the entrypoint runs", async () => {
    const vol = await volume("dsovol", "db_password");
    const c = await container("plugin-first", vol, "cat /run/secrets/db_password; echo; ls -l /run/secrets/..data/");
    await c.start();
    await c.wait();
    const out = await logsOf(c);
    expect(out.split("\n")[0]).toContain(VALUE_ONE);
    expect(out).toContain("-r--r-----");
  });

  test("a container whose secret is unavailable does not start, with DSO's error", async () => {
    const vol = await volume("dsovol-missing", "does_not_exist");
    const c = await container("plugin-missing", vol, "cat /run/secrets/does_not_exist");
    const error = await c.start().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error).toBeDefined();
    expect(String(error?.message)).toContain("does_not_exist");
    // The code the docs promise, and the secret named once.
    expect(String(error?.message)).toContain("SECRET_NOT_FOUND");
    expect(String(error?.message).split("does_not_exist").length - 1).toBe(1);
    expect((await c.inspect()).State.Running).toBe(false);
  });

  test("a change at the provider is rotated into the mounted volume atomically", async () => {
    const vol = await volume("dsovol-rotate", "db_password");
    const c = await container("plugin-rotate", vol, 'trap "exit 0" TERM; while true; do cat /run/secrets/db_password; echo; sleep 0.1; done');
    await c.start();
    await eventually("initial value", async () => ((await logsOf(c)).includes(VALUE_ONE) ? true : undefined));
    await writeFile(join(dir, "secrets", "db_password"), VALUE_TWO);
    await eventually("rotated value", async () => ((await logsOf(c)).includes(VALUE_TWO) ? true : undefined), 15_000);
    const lines = (await logsOf(c)).split("\n").filter(Boolean);
    for (const line of lines) expect([VALUE_ONE, VALUE_TWO].some((v) => line.includes(v))).toBe(true);
  });

  test("no planted value in the agent's log", () => {
    const logs = agent.logs();
    expect(logs).toContain("rotated secrets in DSO volume");
    expect(logs).not.toContain(VALUE_ONE);
    expect(logs).not.toContain(VALUE_TWO);
  });
});
