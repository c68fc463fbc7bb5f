/**
 * Deployment 1, the host service: deploy/dso.service and deploy/run-dso-volumes.mount pass
 * `systemd-analyze verify`, and the compiled agent works under the restrictions the unit sets,
 * reproduced without systemd: a mount namespace (slave propagation, as systemd gives it) where
 * every mount is read-only except the API filesystems, the socket directory, the volume root and
 * the state directory (ProtectSystem=strict + ReadWritePaths= + StateDirectory=), /home and /root
 * hidden (ProtectHome=), the unit's CapabilityBoundingSet= and NoNewPrivileges= through setpriv,
 * LimitCORE= through prlimit, UMask=. The volume root is a tmpfs mounted with the .mount unit's
 * options before the agent starts, as systemd would. Then: plugin, procfs and volume delivery
 * with a non-root owner, a dockerd restart under the running agent (what Before=docker.service
 * gives), the boot order after a simulated reboot (volume root emptied), and an agent restart
 * under running containers.
 * Not reproduced here: PrivateTmp= (the test daemon's socket lives in /tmp), PrivateDevices=,
 * the Protect{Kernel*,Clock,Hostname,ControlGroups}= and Restrict*= settings (no systemd).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { dockerdLogTail, ensureDocker, restartDocker, type TestDocker } from "../support/docker-daemon.ts";
import { DSO_BINARY, dsoBinary, REPO_ROOT } from "../support/dso-binary.ts";
import { unmountTree } from "../support/dso-image.ts";
import { capabilityMask, unitSettings, unitValue } from "../support/systemd-unit.ts";
import { limitOf, MEMLOCK_WANTED_BYTES } from "../../src/doctor/hardening.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const SERVICE = join(REPO_ROOT, "deploy/dso.service");
const MOUNT_UNIT = join(REPO_ROOT, "deploy/run-dso-volumes.mount");
const VALUE_ONE = "systemd-planted-NOVA-5Kd1";
const VALUE_TWO = "systemd-planted-OSCAR-2Jw7";
const VALUE_THREE = "systemd-planted-PAPA-8Hq4";
const API_KEY_ONE = "systemd-planted-QUEBEC-4Lr9";
const API_KEY_TWO = "systemd-planted-ROMEO-6Tz2";
const DRIVER = `dso-sd-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
const SOCKET = join(PLUGIN_DIR, `${DRIVER}.sock`);
const APP_UID = "1000";
/** systemd-analyze security's scale: 0 (locked down) to 10 (exposed); "OK" ends at 4.9... */
const MAX_EXPOSURE = 5;
const COME_BACK_TIMEOUT_MS = 60_000;
const ROTATION_TIMEOUT_MS = 20_000;
/** ProtectSystem=strict leaves these to PrivateDevices=, ProtectKernelTunables=, ProtectControlGroups=. */
const API_FILESYSTEMS = ["/proc", "/sys", "/dev"];
/** Between the agent's exec and dockerd's start in the boot-order test. */
const BOOT_ORDER_GAP_MS = 100;

/** A dockerd restart (stop, start, restore) plus the waits above, on a slow machine. */
const RESTART_TEST_TIMEOUT_MS = 180_000;

const service = unitSettings(SERVICE);
const mountUnit = unitSettings(MOUNT_UNIT);

let d: TestDocker;
let docker: Dockerode;
let work: string;
let volumesRoot: string;
/** Stands for /var/lib/dso (StateDirectory=dso): on disk, it outlives a reboot. */
let stateDir: string;
let agent: AgentProcess | undefined;
/** The volume-mode container, removed by its own test (the restart tests count on containers[0..1]). */
let localVolumeApp: string | undefined;
const containers: string[] = [];
const volumes: string[] = [];
export const measured: Record<string, string> = {};

/** The unit's writable paths, as this test maps them: the same plugins dir, a test volume root, a test state dir. */
function writablePaths(): string[] {
  expect(service.get("ReadWritePaths")).toEqual([PLUGIN_DIR, "/run/dso/volumes"]);
  expect(service.get("StateDirectory")).toEqual(["dso"]);
  return [PLUGIN_DIR, volumesRoot, stateDir];
}

/** The unit's Environment=, with /var/lib/dso (StateDirectory=dso) mapped to the test's state dir. */
function unitEnvironment(): Record<string, string> {
  const pairs = (service.get("Environment") ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1).replace(/^\/var\/lib\/dso(?=\/|$)/, stateDir)]);
  return Object.fromEntries(pairs);
}

/** "16M" and the like (systemd's Limit*= suffixes, base 1024) in bytes. */
function limitBytes(value: string): bigint {
  const m = /^(\d+)([KMG]?)$/.exec(value);
  if (!m) throw new Error(`unsupported limit ${value}`);
  return BigInt(m[1]!) * 1024n ** BigInt(" KMG".indexOf(m[2] || " "));
}

/** argv → the same argv inside the sandbox that reproduces the unit's restrictions. */
function sandboxed(argv: string[]): string[] {
  expect(unitValue(service, "ProtectSystem")).toBe("strict");
  expect(unitValue(service, "ProtectHome")).toBe("yes");
  expect(unitValue(service, "NoNewPrivileges")).toBe("yes");
  const caps = (service.get("CapabilityBoundingSet") ?? []).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`).join(",");
  const writable = writablePaths();
  const script = [
    "set -eu",
    // ReadWritePaths=: each becomes its own (writable) mount before the rest is made read-only.
    ...writable.map((p) => `mount --bind ${p} ${p}`),
    // ProtectSystem=strict: every mount read-only (the test dockerd's data root under /tmp too),
    // except the API filesystems and the writable paths with what is mounted beneath them.
    `awk '{ print $5 }' /proc/self/mountinfo | while read -r mp; do`,
    `  mp=$(printf '%b' "$mp"); keep=`,
    `  for w in ${[...API_FILESYSTEMS, ...writable].join(" ")}; do case "$mp" in "$w"|"$w"/*) keep=1 ;; esac; done`,
    `  [ -n "$keep" ] || mount -o remount,bind,ro "$mp"`,
    "done",
    // ProtectHome=yes: /home, /root and /run/user empty and inaccessible.
    'for home in /home /root /run/user; do if [ -d "$home" ]; then mount -t tmpfs -o ro,mode=0000 tmpfs "$home"; fi; done',
    `umask ${unitValue(service, "UMask")}`,
    `exec prlimit --core=${unitValue(service, "LimitCORE")} --memlock=${limitBytes(unitValue(service, "LimitMEMLOCK"))} setpriv --no-new-privs --inh-caps=-all --bounding-set=-all,${caps} -- "$@"`,
  ].join("\n");
  // Slave, as systemd downgrades a namespaced unit's propagation: dockerd's later mounts reach it.
  return ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script, "sandbox", ...argv];
}

/** What run-dso-volumes.mount does, in the host's namespace, before the agent starts: an empty tmpfs. */
async function remountVolumeRoot(): Promise<void> {
  unmountTree(volumesRoot);
  const mounted = await run(["mount", "-t", unitValue(mountUnit, "Type"), "-o", unitValue(mountUnit, "Options"), "tmpfs", volumesRoot]);
  if (mounted.code !== 0) throw new Error(`mount of the volume root failed: ${mounted.out}`);
}

async function startSandboxedAgent(): Promise<AgentProcess> {
  const started = performance.now();
  const a = await startAgent({
    dir: work,
    config: join(work, "dso.yaml"),
    dockerHost: d.host,
    name: DRIVER,
    socket: SOCKET,
    wrap: sandboxed,
    env: unitEnvironment(),
    readyTimeoutMs: COME_BACK_TIMEOUT_MS,
  });
  measured["sandboxed agent start → 'agent listening'"] = `${Math.round(performance.now() - started)} ms`;
  return a;
}

async function logsOf(id: string): Promise<string> {
  return ((await docker.getContainer(id).logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: `${stdout}${stderr}` };
}

/** The units with ExecStart pointing at the compiled binary (verify checks that it is executable). */
async function unitsForVerify(): Promise<string[]> {
  const dir = join(work, "units");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "dso.service"), readFileSync(SERVICE, "utf8").replaceAll("/usr/local/bin/dso", DSO_BINARY));
  await writeFile(join(dir, "run-dso-volumes.mount"), readFileSync(MOUNT_UNIT, "utf8"));
  return [join(dir, "dso.service"), join(dir, "run-dso-volumes.mount")];
}

beforeAll(async () => {
  d = await ensureDocker();
  docker = d.docker;
  await Promise.all([ensureTestImages(docker), dsoBinary()]);
  work = await mkdtemp("/tmp/dso-sd-");
  volumesRoot = join(work, "volumes");
  stateDir = join(work, "state");
  await mkdir(volumesRoot);
  await mkdir(stateDir, { mode: 0o700 });
  await remountVolumeRoot();
  await mkdir(join(work, "secrets"), { mode: 0o700 });
  await writeFile(join(work, "secrets", "db_password"), VALUE_ONE, { mode: 0o600 });
  await writeFile(join(work, "secrets", "api_key"), API_KEY_ONE, { mode: 0o600 });
  await writeFile(
    join(work, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(work, "secrets")}\nagent:\n  volumes_root: ${volumesRoot}\n  watch:\n    polling_interval: 1s\n`,
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  agent = await startSandboxedAgent();
});

afterAll(async () => {
  for (const id of [...containers, ...(localVolumeApp ? [localVolumeApp] : [])]) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  await agent?.stop("SIGTERM");
  // The socket and the agent's lock file beside it (one agent per socket).
  for (const path of [SOCKET, `${SOCKET}.lock`]) await rm(path, { force: true });
  if (volumesRoot) unmountTree(volumesRoot);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`measured (systemd sandbox): ${JSON.stringify(measured)}`);
});

describe("deploy/dso.service", () => {
  test("passes systemd-analyze verify (and verify does flag a broken unit)", async () => {
    const units = await unitsForVerify();
    const verified = await run(["systemd-analyze", "verify", ...units]);
    expect(verified.out).toBe("");
    expect(verified.code).toBe(0);
    const broken = join(work, "units", "broken.service");
    await writeFile(broken, readFileSync(units[0]!, "utf8").replace("ProtectSystem=strict", "ProtectSystem=strictly"));
    expect((await run(["systemd-analyze", "verify", broken])).out).toContain("Failed to parse protect system value");
  });

  test(`systemd-analyze security rates its exposure at most ${MAX_EXPOSURE}`, async () => {
    const [unit] = await unitsForVerify();
    const security = await run(["systemd-analyze", "security", "--offline=yes", unit!]);
    const level = Number(/Overall exposure level for dso\.service: ([\d.]+)/.exec(security.out)?.[1]);
    measured["systemd-analyze security exposure"] = String(level);
    expect(level).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  test("orders the agent before docker.service, on the tmpfs mount unit", () => {
    expect(service.get("Before")).toContain("docker.service");
    expect(service.get("Requires")).toContain("run-dso-volumes.mount");
    expect(unitValue(mountUnit, "Where")).toBe("/run/dso/volumes");
    expect(unitValue(mountUnit, "Type")).toBe("tmpfs");
  });
});

describe("the agent under the unit's restrictions", () => {
  test("really runs restricted: read-only root, the unit's capability bounding set, no new privileges, no core dumps", () => {
    const pid = agent!.proc.pid;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const mask = capabilityMask(service.get("CapabilityBoundingSet") ?? []);
    expect(BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(status)?.[1]}`)).toBe(mask);
    expect(BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(status)?.[1]}`)).toBe(mask);
    expect(status).toMatch(/NoNewPrivs:\s*1/);
    const limits = readFileSync(`/proc/${pid}/limits`, "utf8");
    expect(limits).toMatch(/Max core file size\s+0\s+0/);
    // LimitMEMLOCK= is what dso doctor asks for (at least MEMLOCK_WANTED_BYTES), and the agent has it.
    const memlock = limitBytes(unitValue(service, "LimitMEMLOCK"));
    expect(memlock).toBeGreaterThanOrEqual(MEMLOCK_WANTED_BYTES);
    expect(limitOf(limits, "Max locked memory")).toEqual({ soft: memlock, hard: memlock });
    // Every mount outside the writable paths and the API filesystems is read-only, / and the test dockerd's data root included.
    const mounts = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").filter(Boolean).map((l) => ({ point: l.split(" ")[4]!, flags: l.split(" ")[5]! }));
    const under = (point: string, dirs: string[]) => dirs.some((dir) => point === dir || point.startsWith(`${dir}/`));
    const writable = writablePaths();
    const mustBeReadOnly = mounts.filter((m) => !under(m.point, [...writable, ...API_FILESYSTEMS]));
    expect(mustBeReadOnly.map((m) => m.point)).toContain("/");
    expect(mustBeReadOnly.filter((m) => !/^ro\b/.test(m.flags))).toEqual([]);
    for (const dir of writable) expect({ dir, flags: mounts.filter((m) => m.point === dir).map((m) => m.flags.split(",")[0]) }).toEqual({ dir, flags: expect.arrayContaining(["rw"]) });
    expect(mounts.filter((m) => writable.includes(m.point) && !m.flags.startsWith("rw"))).toEqual([]);
    // The mount that holds the test dockerd's data root (volume mountpoints live there) is one of them.
    const dataRootMount = mounts.filter((m) => under(d.dataRoot, [m.point])).sort((a, b) => b.point.length - a.point.length)[0];
    expect(dataRootMount?.flags).toMatch(/^ro\b/);
  });

  test("plugin mode: files owned by the configured uid, there before the entrypoint", async () => {
    const vol = `sd-vol-${process.pid}`;
    await docker.createVolume({ Name: vol, Driver: DRIVER, DriverOpts: { secrets: "db_password", uid: APP_UID, mode: "0400" } });
    volumes.push(vol);
    const c = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'echo "start $(cat /run/secrets/db_password) $(stat -c "%u %a" /run/secrets/..data/db_password)"; trap "exit 0" TERM; while true; do echo "now $(cat /run/secrets/db_password)"; sleep 0.2; done'],
      HostConfig: { NetworkMode: "none", RestartPolicy: { Name: "always" }, Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
    });
    containers.push(c.id);
    await c.start();
    const first = await eventually("start line", async () => (await logsOf(c.id)).split("\n").find((l) => l.includes("start ")));
    expect(first).toContain(`start ${VALUE_ONE} ${APP_UID} 400`);
  });

  test("procfs mode: a --tmpfs container gets its files with the labelled uid", async () => {
    const c = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Labels: { "dso.reloader": "true", "dso.secrets": "db_password", "dso.inject.uid": APP_UID },
      // Restarted by dockerd in the restart tests below; its tmpfs comes back empty and is refilled.
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" }, RestartPolicy: { Name: "always" } },
    });
    containers.push(c.id);
    await c.start();
    const seen = await eventually("procfs delivery", async () => {
      const r = await execIn(docker, c.id, ["stat", "-c", "%u", "/run/secrets/..data/db_password"]);
      return r.code === 0 ? r.stdout.trim() : undefined;
    });
    expect(seen).toBe(APP_UID);
    expect((await execIn(docker, c.id, ["cat", "/run/secrets/db_password"])).stdout).toBe(VALUE_ONE);
    expect(agent!.logs()).toContain("delivered secrets to container");
  });

  test("volume mode: a tmpfs local volume gets its files, also when the unit's view of its mountpoint is read-only", async () => {
    const vol = `sd-local-${process.pid}`;
    await docker.createVolume({ Name: vol, DriverOpts: { type: "tmpfs", device: "tmpfs", o: "size=1m" } });
    volumes.push(vol);
    const c = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ["sleep", "3600"],
      Labels: { "dso.reloader": "true", "dso.secrets": "api_key", "dso.inject.uid": APP_UID },
      HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
    });
    localVolumeApp = c.id;
    await c.start();
    const mountpoint = (await docker.getVolume(vol).inspect()).Mountpoint;
    const flagsInAgentView = () => readFileSync(`/proc/${agent!.proc.pid}/mountinfo`, "utf8").split("\n").find((l) => l.split(" ")[4] === mountpoint)?.split(" ")[5];
    const holds = (value: string) =>
      eventually(`volume-mode container holds ${value}`, async () => {
        const r = await execIn(docker, c.id, ["cat", "/run/secrets/api_key"]);
        return r.code === 0 && r.stdout === value ? true : undefined;
      }, ROTATION_TIMEOUT_MS);
    // Mounted after the agent started: it reaches the unit's namespace (slave propagation) writable.
    expect(flagsInAgentView()).toMatch(/^rw\b/);
    await holds(API_KEY_ONE);
    expect((await execIn(docker, c.id, ["stat", "-c", "%u", "/run/secrets/..data/api_key"])).stdout.trim()).toBe(APP_UID);
    // Mounted before the agent started: ProtectSystem=strict made it read-only in the unit's view,
    // so the agent must take another way in (the container's /proc/<pid>/root) for the rotation.
    await agent!.stop("SIGTERM");
    agent = await startSandboxedAgent();
    expect(flagsInAgentView()).toMatch(/^ro\b/);
    await writeFile(join(work, "secrets", "api_key"), API_KEY_TWO, { mode: 0o600 });
    await holds(API_KEY_TWO);
    await docker.getContainer(c.id).remove({ force: true });
    localVolumeApp = undefined;
  }, RESTART_TEST_TIMEOUT_MS);

  test("dockerd restarts under the running agent: the --restart always DSO-volume container comes back with its secret, rotation follows", async () => {
    const app = containers[0]!;
    const before = (await docker.getContainer(app).inspect()).State.StartedAt;
    const { spawnedAt } = await restartDocker();
    const back = await eventually(
      "the DSO-volume container running again",
      async () => {
        const state = (await docker.getContainer(app).inspect()).State;
        return state.Running && state.StartedAt !== before ? performance.now() : undefined;
      },
      COME_BACK_TIMEOUT_MS,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\ndockerd log:\n${dockerdLogTail()}`);
    });
    measured["dockerd start → DSO-volume container running again (agent already up)"] = `${Math.round(back - spawnedAt)} ms`;
    const startLines = () => logsOf(app).then((l) => l.split("\n").filter((x) => x.includes("start ")));
    await eventually("second start line", async () => ((await startLines()).length >= 2 ? true : undefined));
    expect((await startLines())[1]).toContain(`start ${VALUE_ONE}`);
    await writeFile(join(work, "secrets", "db_password"), VALUE_TWO, { mode: 0o600 });
    await eventually("rotation after the dockerd restart", async () => ((await logsOf(app)).includes(`now ${VALUE_TWO}`) ? true : undefined), ROTATION_TIMEOUT_MS);
  }, RESTART_TEST_TIMEOUT_MS);

  test("boot order after a reboot (Before=docker.service, an empty volume root): agent started just before dockerd, the DSO-volume container comes back with its secret", async () => {
    // As at boot: dockerd down, the agent starts, dockerd starts right after it. The agent must
    // answer the volume driver protocol before Docker's API is up (dockerd restores the
    // container, calling Get and Mount, before it serves its API).
    const app = containers[0]!;
    const before = (await docker.getContainer(app).inspect()).State.StartedAt;
    let starting: Promise<AgentProcess> | undefined;
    const explain = async (error: Error): Promise<never> => {
      // Keep hold of the agent process (afterAll stops it) whether or not it got ready.
      agent = await starting?.catch(() => undefined);
      throw new Error(
        `dockerd did not come back while the agent was starting: the agent must serve Plugin.Activate/Get/Mount before it reaches Docker, since dockerd restores DSO-volume containers before it serves its API.\n${error.message}`,
      );
    };
    const { spawnedAt } = await restartDocker({
      whileStopped: async () => {
        await agent?.stop("SIGTERM");
        agent = undefined;
        // A reboot: every tmpfs is gone, the volume root (its files, volume records, host key)
        // included; run-dso-volumes.mount mounts an empty one before the agent starts.
        await remountVolumeRoot();
        starting = startSandboxedAgent();
        // Type=exec: systemd starts docker.service once the agent's process runs.
        await Bun.sleep(BOOT_ORDER_GAP_MS);
      },
    }).catch(explain);
    agent = await starting!;
    const back = await eventually(
      "the DSO-volume container running again",
      async () => {
        const state = (await docker.getContainer(app).inspect()).State;
        return state.Running && state.StartedAt !== before ? performance.now() : undefined;
      },
      COME_BACK_TIMEOUT_MS,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\ndockerd log:\n${dockerdLogTail()}\nagent log:\n${agent?.logs().slice(-2000)}`);
    });
    measured["dockerd start → DSO-volume container running again (agent started just before)"] = `${Math.round(back - spawnedAt)} ms`;
    const startLines = (await logsOf(app)).split("\n").filter((x) => x.includes("start "));
    expect(startLines.at(-1)).toContain(`start ${VALUE_TWO}`);
  }, RESTART_TEST_TIMEOUT_MS);

  test("an agent restart keeps the running containers' files and rotates them again afterwards", async () => {
    const app = containers[0]!;
    const old = agent ?? (await startSandboxedAgent());
    const oldLogs = old.logs();
    await old.stop("SIGTERM");
    agent = undefined;
    // Files stay while the agent is away.
    expect((await execIn(docker, app, ["cat", "/run/secrets/db_password"])).stdout).toBe(VALUE_TWO);
    agent = await startSandboxedAgent();
    await writeFile(join(work, "secrets", "db_password"), VALUE_THREE, { mode: 0o600 });
    // The plugin-mode container (the agent must remember its mounted volume) and the procfs one.
    await eventually("DSO volume rotated by the new agent", async () => ((await logsOf(app)).includes(`now ${VALUE_THREE}`) ? true : undefined), ROTATION_TIMEOUT_MS);
    await eventually("procfs container rotated by the new agent", async () => {
      const r = await execIn(docker, containers[1]!, ["cat", "/run/secrets/db_password"]);
      return r.stdout === VALUE_THREE ? true : undefined;
    }, ROTATION_TIMEOUT_MS);
    for (const value of [VALUE_ONE, VALUE_TWO, VALUE_THREE, API_KEY_ONE, API_KEY_TWO]) {
      expect(oldLogs).not.toContain(value);
      expect(agent.logs()).not.toContain(value);
    }
  }, RESTART_TEST_TIMEOUT_MS);
});
