/**
 * Deployment 3, the Docker managed plugin: deploy/rootfs.ts --plugin output (rootfs +
 * deploy/plugin/config.json) is created and enabled on the test daemon with `docker plugin
 * create/set/enable`, as docs/deploy.md says. A `--restart always` container with a DSO volume
 * sees its secret before its entrypoint; after a dockerd restart (dockerd starts the plugin before
 * it restores containers) the container comes back with its secret, and rotation still works.
 *
 * The restart part needs the agent to open its socket before Docker's API answers (dockerd serves
 * its API only after its plugins answered) and its volume records to survive the plugin's restart:
 * see docs/deploy.md, "Status". With dockerd's live-restore the plugin and the container simply
 * keep running across the restart; that is tested too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { assemblePluginDir } from "../../deploy/rootfs.ts";
import { eventually } from "../support/container-exec.ts";
import { dockerdLogTail, ensureDocker, restartDocker, setDaemonConfig, type TestDocker } from "../support/docker-daemon.ts";
import { dsoBinary } from "../support/dso-binary.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const VALUE_ONE = "managed-planted-LIMA-3Vx8";
const VALUE_TWO = "managed-planted-MIKE-9Rb2";
const VALUE_THREE = "managed-planted-NOVEMBER-4Tz6";
const PLUGIN = `dsotest${process.pid}:latest`;
/** What users type: dockerd adds the :latest tag when it looks the driver up. */
const DRIVER = `dsotest${process.pid}`;
const CLI_TIMEOUT_MS = 60_000;
/** dockerd retries a plugin's socket, then restores containers; generous for slow CI machines. */
const COME_BACK_TIMEOUT_MS = 90_000;
const ROTATION_TIMEOUT_MS = 20_000;
const POLL_MS = 200;
/** Time for the agent in the plugin to reconnect to the restarted dockerd and reconcile. */
const LIVE_SETTLE_MS = 5_000;
/** A dockerd restart (stop, start, restore) plus the waits above, on a slow machine. */
const RESTART_TEST_TIMEOUT_MS = 180_000;
const WORK_PARENT = "/tmp";

let d: TestDocker;
let docker: Dockerode;
let work: string;
let containerId: string;
let volumeName: string;
let pluginEnabled = false;
let liveContainer: string | undefined;
let liveVolume: string | undefined;
export const measured: Record<string, string> = {};

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(["docker", ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", DOCKER_HOST: d.host, HOME: work },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: CLI_TIMEOUT_MS,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function mustCli(args: string[]): Promise<string> {
  const run = await cli(args);
  if (run.code !== 0) throw new Error(`docker ${args.join(" ")} failed (${run.code}): ${run.stderr.trim()}`);
  return run.stdout;
}

async function logsOf(id: string): Promise<string> {
  return ((await docker.getContainer(id).logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

/** Lines the container printed at each start: "start <value>" (its secret before anything else ran). */
async function starts(id: string): Promise<string[]> {
  return (await logsOf(id)).split("\n").filter((l) => l.includes("start ")).map((l) => l.slice(l.indexOf("start ") + 6).trim());
}

/**
 * When the container runs again after the restart (performance.now()). dockerd does not retry a
 * container it failed to start while restoring: its log line ends the wait at once.
 */
async function runningAgain(startedBefore: string): Promise<number> {
  const deadline = Date.now() + COME_BACK_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const state = (await docker.getContainer(containerId).inspect()).State;
    if (state.Running && state.StartedAt !== startedBefore) return performance.now();
    const log = dockerdLogTail();
    const failed = log.split("\n").find((line) => line.includes("failed to start container") && line.includes(containerId));
    if (failed) throw new Error(`dockerd could not start the container again after its restart: ${failed}\ndockerd log:\n${log}`);
    await Bun.sleep(POLL_MS);
  }
  throw new Error(`the container was not running again ${COME_BACK_TIMEOUT_MS / 1000} s after dockerd's restart\ndockerd log:\n${dockerdLogTail()}`);
}

async function pluginLogs(): Promise<string> {
  // A managed plugin's stdout/stderr land in dockerd's log.
  return dockerdLogTail();
}

beforeAll(async () => {
  d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  work = await mkdtemp(join(WORK_PARENT, "dso-mp-"));
  const etc = join(work, "etc-dso");
  await mkdir(join(etc, "secrets"), { recursive: true, mode: 0o700 });
  await writeFile(join(etc, "secrets", "db_password"), VALUE_ONE, { mode: 0o600 });
  await writeFile(
    join(etc, "dso.yaml"),
    "providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: /etc/dso/secrets\nagent:\n  watch:\n    polling_interval: 1s\n",
  );
  const pluginDir = join(work, "plugin");
  await assemblePluginDir(await dsoBinary(), pluginDir);
  await mustCli(["plugin", "create", PLUGIN, pluginDir]);
  await rm(pluginDir, { recursive: true, force: true });
  // The test daemon creates its socket anew at every start (a host's dockerd is socket-activated,
  // docker.socket, and keeps it): bind the socket's directory, or a plugin that lives through a
  // restart (live-restore) would keep the old, dead socket. Inside: /var/run/docker.sock/docker.sock.
  await mustCli([
    "plugin",
    "set",
    PLUGIN,
    `docker-socket.source=${dirname(d.socketPath)}`,
    `DOCKER_HOST=unix:///var/run/docker.sock/${basename(d.socketPath)}`,
    `etc-dso.source=${etc}`,
    "DSO_LOG_LEVEL=debug",
  ]);
  const enabling = performance.now();
  await mustCli(["plugin", "enable", PLUGIN]);
  pluginEnabled = true;
  measured["docker plugin enable"] = `${Math.round(performance.now() - enabling)} ms`;
});

afterAll(async () => {
  // A plugin left disabled by a failed restart is enabled again so its volume can be removed.
  if (pluginEnabled) await cli(["plugin", "enable", PLUGIN]);
  for (const id of [containerId, liveContainer]) if (id) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  if (liveVolume) await cli(["volume", "rm", "-f", liveVolume]);
  // The volume goes while its driver answers: a volume whose driver is gone cannot be removed.
  if (volumeName) await cli(["volume", "rm", "-f", volumeName]);
  if (pluginEnabled) await cli(["plugin", "disable", "-f", PLUGIN]);
  await cli(["plugin", "rm", "-f", PLUGIN]);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`measured (managed plugin): ${JSON.stringify(measured)}`);
});

describe("the managed plugin on the test daemon", () => {
  test("is enabled as a volume driver", async () => {
    const list = await mustCli(["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    expect(list).toContain(`${PLUGIN} true`);
    const inspect = JSON.parse(await mustCli(["plugin", "inspect", PLUGIN]))[0];
    expect(inspect.Config.Interface.Types).toEqual(["docker.volumedriver/1.0"]);
    expect(inspect.Config.PidHost).toBe(true);
    expect(inspect.Config.PropagatedMount).toBe("/run/dso/volumes");
  });

  test("a --restart always container with a DSO volume reads its secret before its entrypoint", async () => {
    volumeName = `mp-vol-${process.pid}`;
    await mustCli(["volume", "create", "-d", DRIVER, "-o", "secrets=db_password", "-o", "mode=0400", volumeName]);
    const c = await docker.createContainer({
      name: `mp-app-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'echo "start $(cat /run/secrets/db_password)"; trap "exit 0" TERM; while true; do echo "now $(cat /run/secrets/db_password)"; sleep 0.2; done'],
      HostConfig: { NetworkMode: "none", RestartPolicy: { Name: "always" }, Mounts: [{ Type: "volume", Source: volumeName, Target: "/run/secrets" }] },
    });
    containerId = c.id;
    await c.start();
    expect(await eventually("first start line", async () => ((await starts(c.id)).length ? (await starts(c.id))[0] : undefined))).toBe(VALUE_ONE);
  });

  test("after a dockerd restart the container runs again with its secret, and rotation still works", async () => {
    const before = (await docker.getContainer(containerId).inspect()).State.StartedAt;
    const { spawnedAt } = await restartDocker();
    measured["dockerd start → API answers"] = `${Math.round(performance.now() - spawnedAt)} ms`;
    // dockerd enables plugins before it serves its API: a plugin still disabled now stays so, and
    // the container fails "plugin ... found but disabled". Say so at once instead of timing out.
    const plugin = JSON.parse(await mustCli(["plugin", "inspect", PLUGIN]))[0];
    if (!plugin.Enabled) {
      throw new Error(
        "dockerd left the plugin disabled after its restart: the agent did not answer on its socket before Docker's API was up " +
          `(the volume driver must answer before Docker does).\ndockerd log:\n${dockerdLogTail()}`,
      );
    }
    const back = await runningAgain(before);
    measured["dockerd start → DSO-volume container running again"] = `${Math.round(back - spawnedAt)} ms`;
    await eventually("second start line", async () => ((await starts(containerId)).length >= 2 ? true : undefined));
    expect((await starts(containerId))[1]).toBe(VALUE_ONE);

    await writeFile(join(work, "etc-dso", "secrets", "db_password"), VALUE_TWO, { mode: 0o600 });
    await eventually("rotated value seen by the restarted container", async () => ((await logsOf(containerId)).includes(`now ${VALUE_TWO}`) ? true : undefined), ROTATION_TIMEOUT_MS);
  }, RESTART_TEST_TIMEOUT_MS);

  test("with live-restore, a dockerd restart leaves the plugin and a DSO-volume container running; rotation follows", async () => {
    // dockerd keeps enabled plugins and containers running across its restart with live-restore:
    // the agent and its tmpfs (volume records included) stay. The first restart switches it on.
    setDaemonConfig({ "live-restore": true });
    try {
      await restartDocker();
      const vol = `mp-live-${process.pid}`;
      await mustCli(["volume", "create", "-d", DRIVER, "-o", "secrets=db_password", vol]);
      liveVolume = vol;
      const c = await docker.createContainer({
        name: `mp-live-${process.pid}`,
        Image: BUSYBOX_IMAGE,
        Cmd: ["sh", "-c", 'echo "start $(cat /run/secrets/db_password)"; trap "exit 0" TERM; while true; do echo "now $(cat /run/secrets/db_password)"; sleep 0.2; done'],
        HostConfig: { NetworkMode: "none", RestartPolicy: { Name: "always" }, Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
      });
      liveContainer = c.id;
      await c.start();
      const current = (await readFile(join(work, "etc-dso", "secrets", "db_password"), "utf8")).trim();
      expect(await eventually("start line", async () => (await starts(c.id))[0])).toBe(current);
      const before = (await c.inspect()).State;
      const pluginPid = JSON.parse(await mustCli(["plugin", "inspect", PLUGIN]))[0].Id as string;

      const { spawnedAt } = await restartDocker();
      measured["live-restore: dockerd start → API answers"] = `${Math.round(performance.now() - spawnedAt)} ms`;
      const after = (await c.inspect()).State;
      expect(after.Running).toBe(true);
      expect(after.StartedAt).toBe(before.StartedAt);
      expect(after.Pid).toBe(before.Pid);
      expect(JSON.parse(await mustCli(["plugin", "inspect", PLUGIN]))[0]).toMatchObject({ Id: pluginPid, Enabled: true });

      // Once the agent has reconnected and reconciled, the running container must still read its
      // files (nothing restarted, nothing to deliver again); then it must follow a change.
      await Bun.sleep(LIVE_SETTLE_MS);
      expect((await logsOf(c.id)).split("\n").filter(Boolean).at(-1)?.trim()).toEndWith(`now ${current}`);
      expect((await c.inspect()).State.StartedAt).toBe(before.StartedAt);
      await writeFile(join(work, "etc-dso", "secrets", "db_password"), VALUE_THREE, { mode: 0o600 });
      await eventually("rotation after the live-restore restart", async () => ((await logsOf(c.id)).includes(`now ${VALUE_THREE}`) ? true : undefined), ROTATION_TIMEOUT_MS);
    } finally {
      // Back to the suite's plain daemon for the test files that follow (their restarts must
      // restart containers): the running dockerd has live-restore, so restart it once more.
      setDaemonConfig({});
      await restartDocker();
    }
  }, RESTART_TEST_TIMEOUT_MS);

  test("no planted value in dockerd's log (which holds the plugin's output)", async () => {
    const logs = await pluginLogs();
    expect(logs).not.toContain(VALUE_ONE);
    expect(logs).not.toContain(VALUE_TWO);
    expect(logs).not.toContain(VALUE_THREE);
  });
});
