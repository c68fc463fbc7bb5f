/**
 * A re-created container must get exactly the old one's storage. Named volumes and binds are in
 * `HostConfig` and come along by themselves; anonymous volumes (an image's `VOLUME`, `docker run
 * -v /path`) are only in `Mounts`, under a hash name, and a container created from `Config` +
 * `HostConfig` would get new, empty ones. They are carried over by name, as compose does on
 * re-create. And storage both containers would write must not be written by two at once: such a
 * container is replaced in place (stop, then start), unless its owner opts in with a label.
 */
import type Dockerode from "dockerode";

type Inspect = Dockerode.ContainerInspectInfo;
type HostConfig = Inspect["HostConfig"];

/** `dso.update.shared-storage=true`: old and replacement may run at once on shared writable storage. */
export const SHARED_STORAGE_LABEL = "dso.update.shared-storage";

interface MountInfo {
  Type?: string;
  Name?: string;
  Source?: string;
  Destination: string;
  RW?: boolean;
}

interface HostMount {
  Type?: string;
  Source?: string;
  Target?: string;
  ReadOnly?: boolean;
}

/** Writable storage the old container and a replacement would both see. */
export interface SharedMount {
  kind: "volume" | "anonymous volume" | "bind";
  /** Volume name or host path. */
  source: string;
  destination: string;
}

function mountsOf(info: Inspect): MountInfo[] {
  return (info.Mounts ?? []) as MountInfo[];
}

/** `src:dst[:opts]` or `dst` (an anonymous volume written as a bind). */
function bindDestination(bind: string): string {
  const parts = bind.split(":");
  return parts.length === 1 ? parts[0]! : parts[1]!;
}

function declaredDestinations(host: HostConfig): Set<string> {
  const declared = new Set<string>();
  for (const bind of host.Binds ?? []) declared.add(bindDestination(bind));
  for (const mount of ((host as { Mounts?: HostMount[] }).Mounts ?? [])) if (mount.Target) declared.add(mount.Target);
  for (const path of Object.keys((host as { Tmpfs?: Record<string, string> }).Tmpfs ?? {})) declared.add(path);
  return declared;
}

function isAnonymous(mount: MountInfo, declared: Set<string>, host: HostConfig): boolean {
  if (mount.Type !== "volume" || !mount.Name) return false;
  if (!declared.has(mount.Destination)) return true;
  // `--mount type=volume,target=/x` without a source is anonymous too.
  const declaredMount = ((host as { Mounts?: HostMount[] }).Mounts ?? []).find((m) => m.Target === mount.Destination);
  return declaredMount?.Type === "volume" && !declaredMount.Source;
}

/**
 * The HostConfig for a re-created twin: the old one's, with every anonymous volume named, so the
 * twin mounts the same volumes instead of new, empty ones.
 */
export function hostConfigKeepingVolumes(info: Inspect): HostConfig {
  const host = info.HostConfig;
  const declared = declaredDestinations(host);
  const anonymous = mountsOf(info).filter((m) => isAnonymous(m, declared, host));
  if (anonymous.length === 0) return host;
  const byTarget = new Map(anonymous.map((m) => [m.Destination, m]));
  const mounts = ((host as { Mounts?: HostMount[] }).Mounts ?? []).map((m) => {
    const carried = m.Target ? byTarget.get(m.Target) : undefined;
    if (!carried) return m;
    byTarget.delete(m.Target!);
    return { ...m, Source: carried.Name };
  });
  const binds = [...byTarget.values()].map((m) => `${m.Name}:${m.Destination}${m.RW === false ? ":ro" : ""}`);
  return {
    ...host,
    Binds: [...(host.Binds ?? []), ...binds],
    ...((host as { Mounts?: HostMount[] }).Mounts ? { Mounts: mounts } : {}),
  } as HostConfig;
}

/**
 * Writable volumes and binds a side-by-side replacement would share with the running container,
 * leaving out the secret targets DSO itself writes (`secretPaths`).
 */
export function writableSharedStorage(info: Inspect, secretPaths: readonly string[]): SharedMount[] {
  const declared = declaredDestinations(info.HostConfig);
  const skip = new Set(secretPaths);
  return mountsOf(info)
    .filter((m) => (m.Type === "volume" || m.Type === "bind") && m.RW !== false && !skip.has(m.Destination))
    .map((m) => ({
      kind: m.Type === "bind" ? "bind" : isAnonymous(m, declared, info.HostConfig) ? "anonymous volume" : "volume",
      source: m.Type === "bind" ? (m.Source ?? "?") : (m.Name ?? "?"),
      destination: m.Destination,
    }));
}

/** Docker's name for an anonymous volume (also once it was carried over by name). */
const GENERATED_NAME = /^[0-9a-f]{64}$/;

export function describeShared(shared: SharedMount[]): string {
  return shared
    .map((s) => (s.kind === "bind" || !GENERATED_NAME.test(s.source) ? `${s.kind} ${s.source} at ${s.destination}` : `anonymous volume ${s.source.slice(0, 12)} at ${s.destination}`))
    .join(", ");
}

/**
 * The container's owner set `dso.update.shared-storage=true`. The same label baked into its image
 * does not count: an image, which may come from anyone, cannot ask for two writers on a volume.
 */
export async function sharesStorageByChoice(docker: Dockerode, info: Inspect): Promise<boolean> {
  if (info.Config.Labels?.[SHARED_STORAGE_LABEL] !== "true") return false;
  const image = (await docker.getImage(info.Image).inspect().catch(() => undefined)) as { Config?: { Labels?: Record<string, string> | null } } | undefined;
  return image?.Config?.Labels?.[SHARED_STORAGE_LABEL] !== "true";
}
