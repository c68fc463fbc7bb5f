/**
 * `dso doctor`: which delivery modes this agent could use where it runs, and why not. Matters
 * most in a container, where each mode needs its own mount or flag (docs/deploy.md): plugin mode
 * the plugins directory and a volume root shared with the host, volume and exec modes the Docker
 * API, procfs mode root and the host PID namespace. An unavailable mode is a warning: the others
 * still serve the containers they fit.
 */
import type Dockerode from "dockerode";
import { access, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { DEFAULT_SOCKET_PATH, DEFAULT_VOLUMES_ROOT } from "../config/index.ts";
import { nearestExisting } from "../delivery/tmpfs.ts";
import { describeError } from "../errors.ts";
import type { CheckResult, DoctorContext } from "./types.ts";
import { mountOf, readMountinfo, type MountEntry } from "./mountinfo.ts";

/** Docker creates it in every container it starts; a managed plugin's rootfs has none. */
const CONTAINER_MARKER = "/.dockerenv";
const PROCFS_PROBE_TIMEOUT_MS = 5_000;
const INFO_TIMEOUT_MS = 5_000;

interface Prerequisites {
  tmpfs: CheckResult;
  socket: CheckResult;
}

const available = (mode: string, detail: string): CheckResult => ({ check: `mode ${mode}`, status: "ok", detail: `available: ${detail}` });
const unavailable = (mode: string, detail: string): CheckResult => ({ check: `mode ${mode}`, status: "warn", detail: `unavailable: ${detail}` });

/**
 * True when the agent sees another filesystem than dockerd: it runs in a container that dockerd
 * started. /.dockerenv alone is not proof (dockerd may run in that same container, as in CI);
 * dockerd's own data root missing from our view is.
 */
async function apartFromDockerd(ctx: DoctorContext): Promise<boolean> {
  if (!existsSync(CONTAINER_MARKER)) return false;
  if (!ctx.docker) return true;
  try {
    const timeout = Bun.sleep(INFO_TIMEOUT_MS).then(() => ({}));
    const info = (await Promise.race([ctx.docker.docker.info(), timeout])) as { DockerRootDir?: string };
    return !info.DockerRootDir || !existsSync(info.DockerRootDir);
  } catch {
    return true;
  }
}

export async function checkDeliveryModes(ctx: DoctorContext, pre: Prerequisites): Promise<CheckResult[]> {
  const inContainer = await apartFromDockerd(ctx);
  const mounts = readMountinfo();
  return [
    await pluginMode(ctx, pre, inContainer, mounts),
    ...apiModes(ctx),
    await procfsMode(ctx),
  ];
}

async function pluginMode(ctx: DoctorContext, pre: Prerequisites, inContainer: boolean, mounts: MountEntry[]): Promise<CheckResult> {
  const socket = ctx.config?.agent.socket ?? DEFAULT_SOCKET_PATH;
  const root = ctx.config?.agent.volumesRoot ?? DEFAULT_VOLUMES_ROOT;
  if (pre.socket.status === "fail") return unavailable("plugin", pre.socket.detail);
  if (pre.tmpfs.status === "fail") return unavailable("plugin", pre.tmpfs.detail);
  if (inContainer) {
    const socketMount = mountOf(await nearestExisting(dirname(socket)), mounts);
    if (!socketMount || socketMount.mountPoint === "/") {
      return unavailable("plugin", `${dirname(socket)} is the container's own directory, dockerd cannot reach the socket there: mount the host's (-v /run/docker/plugins:/run/docker/plugins)`);
    }
    const rootMount = mountOf(await nearestExisting(root), mounts);
    if (!rootMount || rootMount.propagation !== "shared") {
      const where = rootMount ? `${rootMount.mountPoint} is ${rootMount.propagation}` : "no mount found";
      return unavailable("plugin", `${root} is not shared with the host (${where}), so dockerd would not see the volumes: mount it with -v /run/dso:/run/dso:rshared`);
    }
  }
  return available("plugin", `volume driver on ${socket}, volumes on tmpfs under ${root} (secrets before the entrypoint)`);
}

function apiModes(ctx: DoctorContext): CheckResult[] {
  if (!ctx.docker) {
    const why = "needs the Docker API, which did not answer (mount the Docker socket: -v /var/run/docker.sock:/var/run/docker.sock)";
    return [unavailable("volume", why), unavailable("exec", why)];
  }
  return [
    available("volume", "local volumes with type=tmpfs: the atomic writer at their mountpoint or via /proc/<pid>/root where visible, else a tar stream through the Docker API"),
    available("exec", "docker exec tar -x into --tmpfs mounts of images that have tar"),
  ];
}

/** The id of the container this process runs in, from its own mounts (/etc/hostname and friends). */
export function ownContainerId(mountinfo: string): string | undefined {
  return /\/containers\/([0-9a-f]{64})\//.exec(mountinfo)?.[1];
}

/**
 * The container procfs is probed on: one DSO serves (labelled) if any, else any running one, and
 * never the container doctor itself runs in (issue 22: inside the agent's container the newest
 * container was the agent itself, and the probe said --pid host was missing when it was not).
 */
export async function probeTarget(
  docker: Pick<Dockerode, "listContainers">,
  signal: AbortSignal,
  selfId?: string,
): Promise<Dockerode.ContainerInfo | undefined> {
  const self = selfId ?? ownContainerId(await readFile("/proc/self/mountinfo", "utf8").catch(() => ""));
  const notSelf = (c: Dockerode.ContainerInfo) => !self || c.Id !== self;
  const served = await docker.listContainers({ limit: 5, filters: { label: ["dso.reloader=true"] }, abortSignal: signal } as Dockerode.ContainerListOptions);
  const labelled = served.find(notSelf);
  if (labelled) return labelled;
  return (await docker.listContainers({ limit: 5, abortSignal: signal } as Dockerode.ContainerListOptions)).find(notSelf);
}

async function procfsMode(ctx: DoctorContext): Promise<CheckResult> {
  if (process.getuid?.() !== 0) return unavailable("procfs", "needs root to write through /proc/<pid>/root");
  if (!ctx.docker) return unavailable("procfs", "needs the Docker API to find container PIDs");
  try {
    const docker = ctx.docker.docker;
    const signal = AbortSignal.timeout(PROCFS_PROBE_TIMEOUT_MS);
    const running = await probeTarget(docker, signal);
    if (!running) return { check: "mode procfs", status: "warn", detail: "cannot tell: no running container to look at (needs root and the host PID namespace: --pid host)" };
    const pid = (await docker.getContainer(running.Id).inspect({ abortSignal: signal })).State.Pid;
    try {
      await access(`/proc/${pid}/root`);
      return available("procfs", `writes through /proc/<pid>/root (container PIDs are visible here) for --tmpfs mounts, no tar needed`);
    } catch {
      return unavailable("procfs", `/proc/${pid}/root of a running container is not reachable: run the agent in the host PID namespace (--pid host) as root`);
    }
  } catch (error) {
    return unavailable("procfs", describeError(error));
  }
}
