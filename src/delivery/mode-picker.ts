/**
 * Decides how to deliver into one path of one container, from what the daemon says about its
 * mounts. Only RAM-backed targets qualify; everything else is refused with the fix spelled out.
 * Never picks putArchive for a `--tmpfs` target: the daemon writes that to disk (see
 * docs/delivery.md, "Security properties").
 */
import type Dockerode from "dockerode";
import { access } from "node:fs/promises";
import { posix } from "node:path";
import { DsoError } from "../errors.ts";
import { commandMissing, runInContainer } from "./container-exec.ts";
import { containerProcessStart } from "./container-process.ts";
import { normaliseTargetPath } from "./file-names.ts";
import { EXEC_PROBE_CMD } from "./modes/exec.ts";
import { containerRootPath, PROC_ROOT } from "./modes/procfs.ts";
import { mountSeenBy, openRamMountRoot, RAM_FS_TYPES } from "./tmpfs.ts";
import type { DeliveryPlan } from "./types.ts";

export const DEFAULT_PLUGIN_DRIVERS = ["dso"] as const;
/** The probe is `tar --help`: instant unless the container is wedged. */
export const EXEC_PROBE_TIMEOUT_MS = 10_000;

export interface PickOptions {
  signal?: AbortSignal;
  /** Volume driver names that are DSO (the agent's socket name; tests use their own). */
  pluginDrivers?: readonly string[];
  /**
   * The host directory of a mounted DSO volume, from the driver itself (VolumeDriver.mountpointOf).
   * Preferred over dockerd's answer: its volume inspect sometimes reports an empty Mountpoint
   * right after many volumes were mounted at once (seen with 50 containers on 20.10).
   */
  pluginVolumeDir?: (volumeName: string) => string | undefined;
  /**
   * Remembers, per container id, whether its image has tar. The image of a container never
   * changes, so the delivery planner (planner.ts) keeps one map and saves the probe exec (tens
   * of ms) on every rotation.
   */
  tarProbeCache?: Map<string, boolean>;
  /**
   * For --tmpfs targets, write through /proc/<pid>/root before trying exec when the agent can see
   * the container's processes: no process is started in the container and no tar is needed
   * (tens of ms per container instead of one exec). The agent sets it unless the daemon remaps
   * user namespaces, where ids seen from the host differ from those in the container.
   */
  preferProcfs?: boolean;
  /**
   * For tmpfs local volumes, write with the atomic writer at the volume's host mountpoint, or
   * through /proc/<pid>/root, when either is reachable from here, instead of the archive API
   * (atomic rotation, no Docker call). Default on; the agent turns it off when the daemon remaps
   * user namespaces (ids seen from the host differ from those in the container).
   */
  writeVolumesDirectly?: boolean;
}

/** The mount backing a target, reduced to what the decision needs. */
interface Backing {
  kind: "volume" | "bind" | "tmpfs" | "other";
  destination: string;
  name?: string;
  driver?: string;
  source?: string;
}

interface ContainerFacts {
  id: string;
  name: string;
  running: boolean;
  pid: number;
  backings: Backing[];
}

export async function pickDeliveryMode(docker: Dockerode, containerId: string, targetPath: string, opts: PickOptions = {}): Promise<DeliveryPlan> {
  const target = normaliseTargetPath(targetPath);
  const facts = await containerFacts(docker, containerId, opts.signal);
  const backing = deepestBacking(facts.backings, target);
  const refuse = (what: string) =>
    new DsoError(
      "DELIVERY_REFUSED",
      `${target} in container ${facts.name} ${what}; DSO only writes secrets to RAM: add --tmpfs ${target} or a dso volume mounted at ${target}`,
    );
  if (!backing) throw refuse("is in the container's writable layer (on disk)");
  const base = { containerId: facts.id, targetPath: target };

  const ownVolume = backing.kind === "volume" && backing.name !== undefined && opts.pluginVolumeDir?.(backing.name) !== undefined;
  if (backing.kind === "volume" && ((backing.driver && (opts.pluginDrivers ?? DEFAULT_PLUGIN_DRIVERS).includes(backing.driver)) || ownVolume)) {
    // dockerd leaves Source empty for plugin volumes; the volume's Mountpoint comes from the driver's Path.
    const source =
      (backing.name ? opts.pluginVolumeDir?.(backing.name) : undefined) ||
      backing.source ||
      (await volumeFacts(docker, backing.name, opts.signal)).mountpoint;
    if (!source) throw refuse(`is on DSO volume ${backing.name ?? "?"}, which is not mounted`);
    // A sub-path would be resolved on the host through directories the container controls.
    if (target !== backing.destination) {
      throw new DsoError(
        "DELIVERY_REFUSED",
        `${target} is below the DSO volume mounted at ${backing.destination} in container ${facts.name}; deliver to the mount point itself`,
      );
    }
    const hostPath = posix.join(source, posix.relative(backing.destination, target));
    return { ...base, mode: "plugin", reason: `DSO volume ${backing.name ?? ""} (driver ${backing.driver})`, hostPath };
  }
  if (backing.kind === "volume" && backing.driver === "local") {
    const volume = await volumeFacts(docker, backing.name, opts.signal);
    if (!volume.tmpfs) throw refuse(`is on volume ${backing.name ?? "?"}, which is disk-backed`);
    if (!facts.running) throw notRunning(target, facts.name, "a tmpfs volume is mounted only while the container runs");
    // The options only narrow: `-o type=tmpfs -o o=bind -o device=<dir>` is a bind of <dir>.
    const notRam = await notRamBacked(facts, target, volume.mountpoint);
    if (notRam) throw refuse(`is on volume ${backing.name ?? "?"}, which ${notRam}`);
    const reason = `tmpfs-backed local volume ${backing.name ?? ""}`;
    // A sub-path of the volume would be walked through directories the container controls: archive.
    if (opts.writeVolumesDirectly === false || target !== posix.normalize(backing.destination)) return { ...base, mode: "volume", reason: `${reason}, by the archive API` };
    if (volume.mountpoint && (await isVisibleRamMount(volume.mountpoint))) {
      return { ...base, mode: "volume", reason: `${reason}, written at its host mountpoint`, hostPath: volume.mountpoint };
    }
    if (await canSeeRoot(facts.pid)) return { ...base, mode: "volume", reason: `${reason}, written via /proc/<pid>/root`, ...(await pidOf(facts)) };
    return { ...base, mode: "volume", reason: `${reason}, by the archive API (its mountpoint is not visible here)` };
  }
  if (backing.kind === "tmpfs") {
    if (!facts.running) throw notRunning(target, facts.name, "a --tmpfs mount exists only while the container runs");
    if (opts.preferProcfs && (await canSeeRoot(facts.pid))) {
      return { ...base, mode: "procfs", reason: "--tmpfs mount, written via /proc/<pid>/root", ...(await pidOf(facts)) };
    }
    if (await hasTar(docker, facts.id, opts)) return { ...base, mode: "exec", reason: "--tmpfs mount; the image has tar" };
    if (await canSeeRoot(facts.pid)) return { ...base, mode: "procfs", reason: "--tmpfs mount; no tar in the image, writing via /proc/<pid>/root", ...(await pidOf(facts)) };
    throw new DsoError(
      "DELIVERY_REFUSED",
      `${target} in container ${facts.name} is a --tmpfs mount, but the image has no tar and the agent cannot see the container's processes; mount a dso volume at ${target} instead`,
    );
  }
  if (backing.kind === "bind") throw refuse(`is a bind mount of ${backing.source ?? "a host path"} (disk-backed)`);
  if (backing.kind === "volume") throw refuse(`is on volume ${backing.name ?? "?"} of driver ${backing.driver ?? "?"}, which DSO cannot vouch for`);
  throw refuse("is on a mount DSO does not know");
}

function notRunning(target: string, name: string, why: string): DsoError {
  return new DsoError("DELIVERY_REFUSED", `container ${name} is not running, so ${target} cannot receive secrets yet (${why})`);
}

interface InspectReply {
  Id: string;
  Name?: string;
  State?: { Running?: boolean; Pid?: number };
  Mounts?: Array<{ Type?: string; Name?: string; Source?: string; Destination?: string; Driver?: string }>;
  HostConfig?: { Tmpfs?: Record<string, string> | null; Mounts?: Array<{ Type?: string; Target?: string }> | null };
}

async function containerFacts(docker: Dockerode, containerId: string, signal?: AbortSignal): Promise<ContainerFacts> {
  let info: InspectReply;
  try {
    info = (await docker.getContainer(containerId).inspect({ abortSignal: signal } as object)) as InspectReply;
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 404) throw new DsoError("DELIVERY_FAILED", `no such container: ${containerId}`);
    throw new DsoError("DOCKER_API", `inspecting container ${containerId} failed: ${(error as Error).message.split("\n")[0]}`, { cause: error });
  }
  const backings: Backing[] = (info.Mounts ?? []).map((mount) => ({
    kind: mount.Type === "volume" || mount.Type === "bind" || mount.Type === "tmpfs" ? mount.Type : "other",
    destination: mount.Destination ?? "",
    name: mount.Name,
    driver: mount.Driver,
    source: mount.Source,
  }));
  for (const path of Object.keys(info.HostConfig?.Tmpfs ?? {})) backings.push({ kind: "tmpfs", destination: path });
  for (const mount of info.HostConfig?.Mounts ?? []) {
    if (mount.Type === "tmpfs" && mount.Target) backings.push({ kind: "tmpfs", destination: mount.Target });
  }
  return {
    id: info.Id,
    name: (info.Name ?? containerId).replace(/^\//, ""),
    running: info.State?.Running === true,
    pid: info.State?.Pid ?? 0,
    backings,
  };
}

/** The mount whose destination is the target or its nearest ancestor. */
function deepestBacking(backings: readonly Backing[], target: string): Backing | undefined {
  let best: Backing | undefined;
  for (const backing of backings) {
    const destination = posix.normalize(backing.destination);
    const covers = destination === target || target.startsWith(destination === "/" ? "/" : `${destination}/`);
    if (covers && (!best || destination.length > posix.normalize(best.destination).length)) best = backing;
  }
  return best;
}

async function volumeFacts(docker: Dockerode, name: string | undefined, signal?: AbortSignal): Promise<{ tmpfs: boolean; mountpoint?: string }> {
  if (!name) return { tmpfs: false };
  const volume = (await docker.getVolume(name).inspect({ abortSignal: signal } as object)) as {
    Options?: Record<string, string> | null;
    Mountpoint?: string;
  };
  return { tmpfs: volume.Options?.type === "tmpfs", mountpoint: volume.Mountpoint || undefined };
}

async function hasTar(docker: Dockerode, containerId: string, opts: PickOptions): Promise<boolean> {
  const known = opts.tarProbeCache?.get(containerId);
  if (known !== undefined) return known;
  const found = await canExecTar(docker, containerId, opts.signal);
  // Only an answer is remembered: a probe that timed out (a loaded host) is asked again next time.
  if (found !== undefined) opts.tarProbeCache?.set(containerId, found);
  return found === true;
}

/** Whether the image has tar; undefined when the probe itself failed (timeout, Docker error). */
async function canExecTar(docker: Dockerode, containerId: string, signal?: AbortSignal): Promise<boolean | undefined> {
  try {
    const { exitCode } = await runInContainer(docker, containerId, { cmd: EXEC_PROBE_CMD, signal, timeoutMs: EXEC_PROBE_TIMEOUT_MS });
    return !commandMissing(exitCode);
  } catch {
    return undefined;
  }
}

/**
 * Why the target is not a whole RAM-backed filesystem, from the container's own mount table
 * (/proc/<pid>/mountinfo), else from the volume's host mountpoint; undefined when it is one. The
 * volume's options are never the proof: a local volume with `type=tmpfs` and `o=bind` is a bind
 * mount of its `device`, a directory on disk or of a tmpfs others share.
 */
async function notRamBacked(facts: ContainerFacts, target: string, mountpoint: string | undefined): Promise<string | undefined> {
  // Only the container's own process: a PID seen from another PID namespace may be anyone's.
  const start = await containerProcessStart(PROC_ROOT, facts.pid, facts.id);
  const seen = start === undefined ? undefined : await mountSeenBy(facts.pid, target, PROC_ROOT);
  const same = seen !== undefined && (await containerProcessStart(PROC_ROOT, facts.pid, facts.id)) === start;
  if (seen && same) {
    if (!RAM_FS_TYPES.includes(seen.fsType)) return `is not RAM-backed (the container's mount table shows ${seen.fsType} at ${seen.mountPoint})`;
    if (seen.root !== "/") return `is not RAM-backed on its own (a bind of ${seen.root} of a ${seen.fsType} others may share)`;
    return undefined;
  }
  if (mountpoint && (await isVisibleRamMount(mountpoint))) return undefined;
  return "DSO cannot check is RAM-backed from here: it sees neither the container's mount table (run the agent in the host PID namespace) nor the volume's mountpoint";
}

/** The volume's host mountpoint is a tmpfs mount root in this process's mount namespace. */
async function isVisibleRamMount(path: string): Promise<boolean> {
  const handle = await openRamMountRoot(path);
  await handle?.close();
  return handle !== undefined;
}

/** The plan's PID, with its start time when /proc shows it is the container's process. */
async function pidOf(facts: ContainerFacts): Promise<{ pid: number; pidStart?: string }> {
  const pidStart = await containerProcessStart(PROC_ROOT, facts.pid, facts.id);
  return pidStart === undefined ? { pid: facts.pid } : { pid: facts.pid, pidStart };
}

async function canSeeRoot(pid: number): Promise<boolean> {
  if (pid <= 0) return false;
  try {
    await access(containerRootPath(pid));
    return true;
  } catch {
    return false;
  }
}
