/**
 * Is a path RAM-backed, and is a directory private to this process's user: statfs, the mount
 * tables in /proc (this process's, or a container process's), and the owner and mode checks that
 * the DSO volume root and its records need.
 */
import { constants } from "node:fs";
import { access, chmod, open, readFile, stat, statfs, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { DsoError } from "../errors.ts";

/** f_type of a tmpfs (linux/magic.h). ramfs is RAM-backed too. */
export const TMPFS_MAGIC = 0x01021994;
export const RAMFS_MAGIC = 0x858458f6;

export async function isRamBacked(path: string): Promise<boolean> {
  const stats = await statfs(path);
  return stats.type === TMPFS_MAGIC || stats.type === RAMFS_MAGIC;
}

/**
 * Opens `path` when it is the root of a RAM-backed mount that this process may write to, else
 * undefined. Checked through the open directory (`/proc/self/fd/<fd>` and its `..`), so what was
 * checked is what gets written: a mount that goes away afterwards cannot send the writes to the
 * directory below it on disk. "Mount root" = its device differs from its parent's (a tmpfs volume
 * that is not mounted is a plain directory of the data root, on the parent's device).
 */
export async function openRamMountRoot(path: string): Promise<FileHandle | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const self = `/proc/self/fd/${handle.fd}`;
    const [dir, parent] = await Promise.all([stat(self), stat(`${self}/..`)]);
    const usable = dir.dev !== parent.dev && (await isRamBacked(self)) && (await access(self, constants.W_OK).then(() => true, () => false));
    if (usable) return handle;
  } catch {
    // fall through: not usable
  }
  await handle.close();
  return undefined;
}

/** The path itself, or its closest ancestor that exists. */
export async function nearestExisting(path: string): Promise<string> {
  let current = path;
  for (;;) {
    try {
      await statfs(current);
      return current;
    } catch {
      const parent = dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

export interface MountEntry {
  mountPoint: string;
  /** The directory of its filesystem that is mounted there ("/" for a whole filesystem; a bind of a sub-directory shows that). */
  root: string;
  /** "shared" sends new mounts to its peers (the host); "slave" only receives; "private" neither. */
  propagation: "shared" | "slave" | "private";
  fsType: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** /proc/<pid>/mountinfo (proc(5)): mount points are shown relative to that process's root. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const separator = fields.indexOf("-");
    if (fields.length < 7 || separator < 6) continue;
    const optional = fields.slice(6, separator);
    // A mount that is shared and also a slave of another group still sends new mounts to its own peers only.
    const shared = optional.some((f) => f.startsWith("shared:"));
    const slave = optional.some((f) => f.startsWith("master:"));
    const propagation = shared && !slave ? "shared" : slave ? "slave" : "private";
    entries.push({ mountPoint: unescapeMountPath(fields[4]!), root: unescapeMountPath(fields[3]!), propagation, fsType: fields[separator + 1] ?? "" });
  }
  return entries;
}

/** The mount a path lives on: the last-mounted entry with the longest mount point above it. */
export function mountOf(path: string, entries: readonly MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const entry of entries) {
    const point = entry.mountPoint;
    const above = point === "/" || path === point || path.startsWith(`${point}/`);
    if (above && (!best || point.length >= best.mountPoint.length)) best = entry;
  }
  return best;
}

export const RAM_FS_TYPES: readonly string[] = ["tmpfs", "ramfs"];

/**
 * The mount that holds `path` as the process `pid` sees it (a container's process: its own mount
 * table, whatever the volume's options claim), or undefined when that table cannot be read here.
 */
export async function mountSeenBy(pid: number, path: string, procRoot = "/proc"): Promise<MountEntry | undefined> {
  if (pid <= 0) return undefined;
  const text = await readFile(`${procRoot}/${pid}/mountinfo`, "utf8").catch(() => undefined);
  return text === undefined ? undefined : mountOf(path, parseMountinfo(text));
}

/**
 * Why `dir` is not private to this process's user (owner, or group/other permission bits), or
 * undefined when it is. A directory others may write to can hold anything they planted; one
 * they may read or walk into shows them the files under it.
 */
export async function privateDirProblem(dir: string): Promise<string | undefined> {
  const stats = await stat(dir);
  const uid = process.getuid?.() ?? 0;
  if (stats.uid !== uid) return `it is owned by uid ${stats.uid}, not by the agent's uid ${uid}`;
  if (stats.mode & 0o077) return `its mode ${(stats.mode & 0o7777).toString(8).padStart(4, "0")} lets others in (it must be 0700)`;
  return undefined;
}

/**
 * Makes `dir` private or refuses it. One that is ours and that no one else could write to is
 * closed (chmod 0700: nothing can have been planted in it; an older DSO mounted its volume root
 * 0711); one owned by another user, or writable by group or others, is refused.
 */
export async function securePrivateDir(dir: string, what: string, hint: string): Promise<"already" | "closed"> {
  const stats = await stat(dir);
  const uid = process.getuid?.() ?? 0;
  if (stats.uid === uid && (stats.mode & 0o077) === 0) return "already";
  if (stats.uid === uid && (stats.mode & 0o022) === 0) {
    await chmod(dir, 0o700);
    return "closed";
  }
  const problem = (await privateDirProblem(dir)) ?? "it is not private";
  throw new DsoError("DELIVERY_REFUSED", `${what} ${dir} is refused: ${problem}, so other users could plant or read DSO files there`, { hint });
}
