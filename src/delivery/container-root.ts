/**
 * Opens a directory inside a container's root (`/proc/<pid>/root`) without ever leaving it.
 *
 * The kernel resolves an absolute symlink met under /proc/<pid>/root against OUR root (the host),
 * so a hostile container could point /run/secrets at /etc. We therefore walk the path ourselves,
 * one component at a time with lstat, resolving each symlink as the container would see it
 * (absolute = from the container root) and refusing one that climbs above that root. The final
 * directory is opened with O_NOFOLLOW and checked to be the very inode we resolved, so a swap
 * between the walk and the open is caught. Later writes go through /proc/self/fd/<fd>.
 */
import { constants } from "node:fs";
import { lstat, open, readlink, type FileHandle } from "node:fs/promises";
import { DsoError } from "../errors.ts";
import { printableName } from "./file-names.ts";

/** Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;
const OPEN_DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

export interface RootedDir {
  /** A path naming the opened directory itself: /proc/self/fd/<fd>. */
  path: string;
  /** The resolved path as the container sees it. */
  containerPath: string;
  close(): Promise<void>;
}

export async function openDirInRoot(root: string, targetPath: string): Promise<RootedDir> {
  const refuse = (problem: string) =>
    new DsoError("DELIVERY_REFUSED", `target path ${printableName(targetPath)} ${problem}`, {
      hint: "deliver into a --tmpfs mount that is a plain directory in the container",
    });
  const resolved = await resolveInRoot(root, targetPath, refuse);
  const hostPath = rootedPath(root, resolved);
  const expected = await lstat(hostPath);
  if (!expected.isDirectory()) throw refuse("is not a directory in the container");
  let handle: FileHandle;
  try {
    handle = await open(hostPath, OPEN_DIR_FLAGS);
  } catch (error) {
    throw refuse(`cannot be opened (${(error as { code?: string }).code ?? "error"})`);
  }
  const opened = await handle.stat();
  if (opened.dev !== expected.dev || opened.ino !== expected.ino) {
    await handle.close();
    throw refuse("changed while it was being resolved");
  }
  return { path: `/proc/self/fd/${handle.fd}`, containerPath: `/${resolved.join("/")}`, close: () => handle.close() };
}

/** The components of `targetPath` with every symlink resolved inside the root. */
async function resolveInRoot(root: string, targetPath: string, refuse: (problem: string) => DsoError): Promise<string[]> {
  const resolved: string[] = [];
  const pending = splitPath(targetPath);
  let hops = 0;
  while (pending.length > 0) {
    const component = pending.shift() as string;
    if (component === "..") {
      if (resolved.length === 0) throw refuse("leads out of the container's root");
      resolved.pop();
      continue;
    }
    const candidate = [...resolved, component];
    let stats: Awaited<ReturnType<typeof lstat>>;
    try {
      stats = await lstat(rootedPath(root, candidate));
    } catch {
      throw refuse(`does not exist in the container (at /${candidate.join("/")})`);
    }
    if (!stats.isSymbolicLink()) {
      if (!stats.isDirectory()) throw refuse(`has a non-directory at /${candidate.join("/")}`);
      resolved.push(component);
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS) throw refuse("has too many levels of symbolic links");
    const link = await readlink(rootedPath(root, candidate));
    // Absolute targets restart at the container's root; relative ones continue from the link's directory.
    if (link.startsWith("/")) resolved.length = 0;
    pending.unshift(...splitPath(link));
  }
  return resolved;
}

function splitPath(path: string): string[] {
  return path.split("/").filter((part) => part !== "" && part !== ".");
}

function rootedPath(root: string, components: readonly string[]): string {
  return components.length === 0 ? root : `${root}/${components.join("/")}`;
}
