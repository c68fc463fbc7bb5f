/**
 * Faults of full filesystems, with the compiled agent: a container's 4 KiB tmpfs target and a new
 * version that does not fit (the delivery fails with an error the user sees in `dso ls`, the
 * previous version stays whole and readable), and a full DSO volume root (a Mount still works:
 * each volume is a tmpfs of its own, sized for its secrets).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { readInside } from "../support/agent-probe.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { removeFleet, startFleet, type FleetMember } from "../support/fleet.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const DRIVER = `dso-full-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
const SMALL = "full-v1-fits";

let docker: Dockerode;
let dir: string;
let volumesRoot: string;
let agent: AgentProcess;
let fleet: FleetMember[] = [];
const containers: string[] = [];
const volumes: string[] = [];

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-fault-full-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "cert"), SMALL);
  await writeFile(join(dir, "secrets", "big"), "B".repeat(256 * 1024));
  // A 1 MiB tmpfs as the volume root: the agent keeps its key and records there, the test fills the rest.
  volumesRoot = join(dir, "volumes");
  await mkdir(volumesRoot);
  Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", volumesRoot]);
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config: { path: ${join(dir, "secrets")} }\nagent:\n  volumes_root: ${volumesRoot}\n  watch: { polling_interval: 1s }\n`,
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host, name: DRIVER });
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
}, 60_000);

afterAll(async () => {
  await removeFleet(docker, fleet);
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  await agent?.stop("SIGKILL");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
});

interface Listed {
  containers: Array<{ name: string; error?: string; status: Array<{ name: string; state: string }> }>;
}

describe("full filesystems", () => {
  test("a 4 KiB target and a version that does not fit: a clear error, the previous version stays whole", async () => {
    fleet = await startFleet(docker, 1, {
      prefix: "fault-full",
      labels: { "dso.reloader": "true", "dso.secrets": "cert", "dso.update.strategy": "none" },
      tmpfs: "rw,mode=0755,size=4k",
    });
    const pid = fleet[0]!.pid;
    await eventually("first delivery", async () => (readInside(pid, "/run/secrets/cert") === SMALL ? true : undefined));
    await writeFile(join(dir, "secrets", "cert"), "C".repeat(64 * 1024));
    const listed = await eventually("the failed delivery in dso ls", async () => {
      const ls = JSON.parse((await agent.cli(["ls", "--json"])).stdout) as Listed;
      const mine = ls.containers.find((c) => c.name === `fault-full-0-${process.pid}`);
      return mine?.error ? mine : undefined;
    });
    const log = await agent.waitForLog(/delivery incomplete.*fault-full-0/);
    console.log(`full 4 KiB target: dso ls error: ${listed.error}; state ${listed.status.map((s) => s.state).join(",")}`);
    expect(listed.error).toMatch(/no space|ENOSPC|full/i);
    expect(listed.error).toContain("/run/secrets");
    expect(log).toMatch(/no space|ENOSPC|full/i);
    // Whole and readable: the old value exactly, and no half-written version left beside it.
    expect(readInside(pid, "/run/secrets/cert")).toBe(SMALL);
    await Bun.sleep(1500); // another poll: still the old files, the agent keeps running
    expect(readInside(pid, "/run/secrets/cert")).toBe(SMALL);
    expect(agent.proc.exitCode).toBeNull();
  }, 60_000);

  test("the DSO volume root full: a Mount still succeeds, the volume is a tmpfs of its own (issue 18, finding 5)", async () => {
    // Leave less room on the root than the 256 KiB secret needs.
    Bun.spawnSync(["dd", "if=/dev/zero", `of=${join(volumesRoot, "filler")}`, "bs=4k", "count=200"], { stderr: "ignore" });
    const vol = `dsofull-${process.pid}`;
    await docker.createVolume({ Name: vol, Driver: DRIVER, DriverOpts: { secrets: "big" } });
    volumes.push(vol);
    const c = await docker.createContainer({
      name: `fault-fullroot-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", "wc -c < /run/secrets/big"],
      HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
    });
    containers.push(c.id);
    await c.start();
    expect((await c.wait()).StatusCode).toBe(0);
    expect(((await c.logs({ stdout: true })) as unknown as Buffer).toString("latin1")).toContain(String(256 * 1024));
    expect(agent.proc.exitCode).toBeNull();
    expect((await agent.cli(["status"])).code).toBe(0);
  }, 60_000);
});
