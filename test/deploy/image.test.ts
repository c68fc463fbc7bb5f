/**
 * Deployment 2, the container image: the agent image (deploy/rootfs.ts imported with
 * deploy/Dockerfile's ENTRYPOINT/CMD, standing in for the distroless build) runs against the test
 * daemon exactly as docs/deploy.md says: --read-only, --pid host, --cap-add SYS_ADMIN, the Docker
 * socket, the plugins directory and the volume root with rshared propagation. Delivery works in
 * plugin mode (secret there before the entrypoint) and procfs mode (image without tar), and
 * `dso doctor` inside says which modes are available and why. After a dockerd restart a
 * --restart always DSO-volume app comes back with its secret, also when the agent's container
 * starts only after dockerd gave up on the app (the agent starts it: src/agent/revive.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eventually, execIn } from "../support/container-exec.ts";
import { dockerdLogTail, ensureDocker, restartDocker, type TestDocker } from "../support/docker-daemon.ts";
import { DOCKERFILE, importAgentImage, makeSharedMount, rssBytes, treeRssBytes, unmountTree } from "../support/dso-image.ts";
import { BUSYBOX_IMAGE, ensureTestImages, NOTAR_IMAGE } from "../support/test-images.ts";

const VALUE = "image-planted-KILO-7Qw3";
const IMAGE = "dso-test/agent:image";
const DRIVER = `dso-img-${process.pid}`;
const PLUGIN_DIR = "/run/docker/plugins";
const SOCKET = join(PLUGIN_DIR, `${DRIVER}.sock`);
const READY_TIMEOUT_MS = 20_000;
const RESTART_TIMEOUT_MS = 60_000;
const ACTIVATE_TIMEOUT_MS = 1_000;
/** dockerd stalls on the missing driver during its restore (observed ~60 s) before its API answers. */
const REVIVE_TIMEOUT_MS = 120_000;
/** A dockerd restart (stop, start, restore) plus the waits above, on a slow machine. */
const RESTART_TEST_TIMEOUT_MS = 180_000;
/** Short: the test dir is under /tmp and unix socket paths are capped at 108 bytes. */
const WORK_PARENT = "/tmp";

let d: TestDocker;
let docker: Dockerode;
let work: string;
let sharedRoot: string;
let agent: Dockerode.Container;
const containers: string[] = [];
const volumes: string[] = [];
export const measured: Record<string, string> = {};

interface Report {
  ok: boolean;
  checks: Array<{ check: string; status: string; detail: string }>;
}

async function logsOf(c: Dockerode.Container): Promise<string> {
  return ((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

async function activates(): Promise<boolean> {
  try {
    const res = await fetch("http://dso/Plugin.Activate", { method: "POST", unix: SOCKET, signal: AbortSignal.timeout(ACTIVATE_TIMEOUT_MS) });
    return (await res.text()).includes("VolumeDriver");
  } catch {
    return false;
  }
}

/** The documented `docker run` of the agent, with this test's paths. */
function agentRunSpec(name: string, cmd: string[], opts: { pidHost: boolean; shared: boolean }): Dockerode.ContainerCreateOptions {
  const binds = [`${d.socketPath}:/var/run/docker.sock`, `${PLUGIN_DIR}:${PLUGIN_DIR}`, `${join(work, "etc-dso")}:/etc/dso:ro`];
  if (opts.shared) binds.push(`${sharedRoot}:${sharedRoot}:rshared`);
  return {
    name,
    Image: IMAGE,
    Cmd: cmd,
    HostConfig: {
      ReadonlyRootfs: true,
      PidMode: opts.pidHost ? "host" : "",
      CapAdd: ["SYS_ADMIN"],
      Binds: binds,
      NetworkMode: "none",
      RestartPolicy: { Name: opts.pidHost ? "always" : "no" },
    },
  };
}

async function doctorIn(spec: Dockerode.ContainerCreateOptions): Promise<Report> {
  const c = await docker.createContainer(spec);
  containers.push(c.id);
  await c.start();
  await c.wait();
  const out = await logsOf(c);
  return JSON.parse(out.slice(out.indexOf("{"))) as Report;
}

const byName = (report: Report) => Object.fromEntries(report.checks.map((c) => [c.check, c]));

beforeAll(async () => {
  d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  work = await mkdtemp(join(WORK_PARENT, "dso-img-"));
  sharedRoot = join(work, "run-dso");
  await makeSharedMount(sharedRoot);
  await mkdir(join(work, "etc-dso", "secrets"), { recursive: true, mode: 0o700 });
  await writeFile(join(work, "etc-dso", "secrets", "db_password"), VALUE, { mode: 0o600 });
  await writeFile(
    join(work, "etc-dso", "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: /etc/dso/secrets\nagent:\n  volumes_root: ${join(sharedRoot, "volumes")}\n  watch:\n    polling_interval: 1s\n`,
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  const size = await importAgentImage(docker, IMAGE, work);
  measured["image size"] = `${(size / 1e6).toFixed(1)} MB`;

  agent = await docker.createContainer(agentRunSpec(`dso-agent-${process.pid}`, ["agent", "--socket", SOCKET], { pidHost: true, shared: true }));
  containers.push(agent.id);
  const started = performance.now();
  await agent.start();
  await eventually("agent socket answers Plugin.Activate", async () => ((await activates()) ? true : undefined), READY_TIMEOUT_MS);
  measured["start → Plugin.Activate answers"] = `${Math.round(performance.now() - started)} ms`;
  await eventually("agent listening", async () => ((await logsOf(agent)).includes("agent listening") ? true : undefined), READY_TIMEOUT_MS);
  measured["start → 'agent listening' seen in its log"] = `${Math.round(performance.now() - started)} ms`;
  const listening = (await logsOf(agent)).split("\n").find((l) => l.includes("agent listening")) ?? "";
  const listeningAt = Date.parse(/"time":"([^"]+)"/.exec(listening)?.[1] ?? "");
  measured["process started (State.StartedAt) → 'agent listening'"] = `${listeningAt - Date.parse((await agent.inspect()).State.StartedAt)} ms`;
});

afterAll(async () => {
  for (const id of containers.filter((c) => c !== agent?.id)) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  // DSO volumes go while their driver still answers (a volume whose driver is gone cannot be removed).
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  if (agent) {
    console.log(`agent log tail:\n${(await logsOf(agent).catch(() => "")).slice(-1500)}`);
    await agent.remove({ force: true }).catch(() => {});
  }
  // The socket and the agent's lock file beside it (one agent per socket).
  for (const path of [SOCKET, `${SOCKET}.lock`]) await rm(path, { force: true });
  if (sharedRoot) unmountTree(sharedRoot);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`measured (image): ${JSON.stringify(measured)}`);
});

describe("the agent image, run as docs/deploy.md says", () => {
  test("has the binary and its glibc libraries only, and runs read-only as `dso agent`", async () => {
    const info = await agent.inspect();
    expect(info.State.Running).toBe(true);
    expect(info.Config.Entrypoint).toEqual(["/usr/local/bin/dso"]);
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    const image = await docker.getImage(IMAGE).inspect();
    expect(image.Config.Cmd).toEqual(["agent"]);
    // What the image stands in for: a distroless glibc base, the binary copied from the build stage.
    const dockerfile = readFileSync(DOCKERFILE, "utf8");
    expect(dockerfile).toMatch(/^FROM gcr\.io\/distroless\/base-nossl-debian12\b/m);
    expect(dockerfile).toContain("COPY --from=build /src/dist/dso /usr/local/bin/dso");
    expect(dockerfile).not.toMatch(/^(COPY|ADD)\b.*--chmod/m); // the classic builder (Debian docker.io) refuses it
    // No shell in the image: nothing else could run a `mount` either.
    const shell = await execIn(docker, agent.id, ["/bin/sh", "-c", "true"]).catch((e: Error) => ({ code: -1, stderr: e.message }));
    expect(shell.code).not.toBe(0);
  });

  test("plugin mode: a container with a DSO volume reads its secret before its entrypoint", async () => {
    const vol = `img-vol-${process.pid}`;
    await docker.createVolume({ Name: vol, Driver: DRIVER, DriverOpts: { secrets: "db_password", mode: "0400" } });
    volumes.push(vol);
    const c = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", "cat /run/secrets/db_password; echo; stat -c %a /run/secrets/..data/db_password"],
      HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }] },
    });
    containers.push(c.id);
    await c.start();
    await c.wait();
    const lines = (await logsOf(c)).split("\n");
    expect(lines[0]).toContain(VALUE);
    expect(lines[1]).toContain("400");
    // The tmpfs the agent mounted in its container with mount(2) (nosuid,nodev,noexec are its
    // flags) reached the host through the rshared volume root: that is where dockerd found the volume.
    const onHost = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === join(sharedRoot, "volumes"));
    expect(onHost).toMatch(/\bnosuid,nodev,noexec\b.* - tmpfs /);
  });

  test("procfs mode (--pid host): a --tmpfs container of an image without tar gets its secret", async () => {
    const c = await docker.createContainer({
      Image: NOTAR_IMAGE,
      Labels: { "dso.reloader": "true", "dso.secrets": "db_password" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" } },
    });
    containers.push(c.id);
    await c.start();
    const delivered = await eventually("secret delivered via /proc/<pid>/root", async () => {
      const r = await execIn(docker, c.id, ["cat", "/run/secrets/db_password"]);
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(delivered).toBe(VALUE);
    const pid = (await agent.inspect()).State.Pid;
    measured["agent RSS after deliveries"] = `${(rssBytes(pid) / 2 ** 20).toFixed(1)} MiB`;
    measured["agent + file provider RSS"] = `${(treeRssBytes(pid) / 2 ** 20).toFixed(1)} MiB`;
  });

  test("dso doctor in the agent container: every mode available", async () => {
    const exec = await execIn(docker, agent.id, ["/usr/local/bin/dso", "doctor", "--json"]);
    const checks = byName(JSON.parse(exec.stdout) as Report);
    for (const mode of ["plugin", "volume", "exec", "procfs"]) {
      expect(`${mode}: ${checks[`mode ${mode}`]?.status} ${checks[`mode ${mode}`]?.detail}`).toStartWith(`${mode}: ok available`);
    }
  });

  test("dso doctor in a container without --pid host and without the rshared volume root says why plugin and procfs are out", async () => {
    const report = await doctorIn(agentRunSpec(`dso-doctor-${process.pid}`, ["doctor", "--json"], { pidHost: false, shared: false }));
    const checks = byName(report);
    expect(checks["mode plugin"]?.status).toBe("warn");
    expect(checks["mode plugin"]?.detail).toContain("rshared");
    expect(checks["mode procfs"]?.status).toBe("warn");
    expect(checks["mode procfs"]?.detail).toContain("--pid host");
    expect(checks["mode volume"]?.status).toBe("ok");
    expect(checks["mode exec"]?.status).toBe("ok");
  });

  test("a dockerd restart brings the agent container and a --restart always --tmpfs app back, with the app's secret delivered again", async () => {
    // DSO volumes go first, while their driver answers: dockerd would wait ~15 s per volume of a
    // legacy driver that is not up yet when it restores volumes (docs/deploy.md).
    for (const id of containers.filter((c) => c !== agent.id)) await docker.getContainer(id).remove({ force: true });
    containers.splice(0, containers.length, agent.id);
    for (const v of volumes.splice(0)) await docker.getVolume(v).remove();
    const app = await docker.createContainer({
      Image: NOTAR_IMAGE,
      Labels: { "dso.reloader": "true", "dso.secrets": "db_password" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" }, RestartPolicy: { Name: "always" } },
    });
    containers.push(app.id);
    await app.start();
    const secret = async () => {
      const r = await execIn(docker, app.id, ["cat", "/run/secrets/db_password"]);
      return r.code === 0 ? r.stdout : undefined;
    };
    expect(await eventually("first delivery", secret)).toBe(VALUE);
    const before = (await app.inspect()).State.StartedAt;
    const { spawnedAt } = await restartDocker();
    await eventually("app restarted by dockerd", async () => {
      const state = (await app.inspect()).State;
      return state.Running && state.StartedAt !== before ? true : undefined;
    }, RESTART_TIMEOUT_MS);
    expect((await agent.inspect()).State.Running).toBe(true);
    expect(await eventually("secret delivered again after the restart", secret, RESTART_TIMEOUT_MS)).toBe(VALUE);
    measured["dockerd start → restarted --tmpfs app has its secret again"] = `${Math.round(performance.now() - spawnedAt)} ms`;
  }, RESTART_TEST_TIMEOUT_MS);

  test("a dockerd restart brings a --restart always app with a DSO volume back, its secret there before its entrypoint, also when the agent comes up too late", async () => {
    const vol = `img-rvol-${process.pid}`;
    await docker.createVolume({ Name: vol, Driver: DRIVER, DriverOpts: { secrets: "db_password" } });
    volumes.push(vol);
    const app = await docker.createContainer({
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", "cat /run/secrets/db_password; echo; exec sleep 3600"],
      HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: vol, Target: "/run/secrets" }], RestartPolicy: { Name: "always" } },
    });
    containers.push(app.id);
    await app.start();
    const runsPrinted = (n: number) =>
      eventually(`run ${n} printed its secret`, async () => {
        const out = (await logsOf(app)).split("\n").filter((l) => l.trim() !== "");
        return out.length >= n ? out : undefined;
      });
    await runsPrinted(1);
    const runningAgain = async (since: string) =>
      eventually("DSO-volume app running again", async () => {
        const state = (await app.inspect()).State;
        return state.Running && state.StartedAt !== since ? performance.now() : undefined;
      }, REVIVE_TIMEOUT_MS).catch(async (error: Error) => {
        throw new Error(`${error.message}; app state: ${JSON.stringify((await app.inspect()).State)}\n${dockerdLogTail()}`);
      });

    // The documented order: both containers --restart always, dockerd restores them together.
    const firstStart = (await app.inspect()).State.StartedAt;
    const { spawnedAt } = await restartDocker();
    measured["dockerd start → DSO-volume app running again"] = `${Math.round((await runningAgain(firstStart)) - spawnedAt)} ms`;

    // The agent's container starts after dockerd gave up on the app ("plugin not found"; dockerd
    // never retries a failed start): the agent starts it when it connects (src/agent/revive.ts).
    await agent.update({ RestartPolicy: { Name: "no" } });
    // dockerd answers only after its restore: ~15 s per lookup of the missing driver (volume, container, start).
    await restartDocker({ startTimeoutMs: REVIVE_TIMEOUT_MS });
    const dead = await eventually("app dead on the missing driver", async () => {
      const state = (await app.inspect()).State;
      return !state.Running && state.Error.includes(DRIVER) ? state : undefined;
    }, REVIVE_TIMEOUT_MS);
    await agent.update({ RestartPolicy: { Name: "always" } });
    const agentStarted = performance.now();
    await agent.start();
    measured["late agent start → DSO-volume app running again"] = `${Math.round((await runningAgain(dead.StartedAt)) - agentStarted)} ms`;
    measured["State.Error of the dead app"] = dead.Error;
    // Each start printed the secret as its first line: the files were there before the entrypoint.
    expect(await runsPrinted(3)).toEqual([expect.stringContaining(VALUE), expect.stringContaining(VALUE), expect.stringContaining(VALUE)]);
    await eventually("the agent logged the start", async () => ((await logsOf(agent)).includes("left dead because the DSO volume driver was missing") ? true : undefined));
  }, 2 * RESTART_TEST_TIMEOUT_MS);

  test("no planted value in the agent container's log", async () => {
    expect(await logsOf(agent)).not.toContain(VALUE);
  });
});
