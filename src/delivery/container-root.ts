/**
 * Opens a directory inside a container's root (`/proc/<pid>/root`) without ever leaving it.
 *
 * The kernel resolves an absolute symlink met under /proc/<pid>/root against OUR root (the host),
 * so a hostile container could point /run/secrets at /etc. We therefore walk the path ourselves
 * with directory file descriptors: each component is opened relative to the fd of its parent
 * (`/proc/self/fd/<parent>/<name>`, O_NOFOLLOW|O_DIRECTORY), a symlink is read relative to that
 * fd and resolved as the container would see it (absolute = from the container root), and one
 * that climbs above that root is refused. Nothing is looked up by a path the container could
 * change between two lookups, so swapping a component during the walk cannot redirect us.
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

export const fdPath = (handle: FileHandle, name?: string) => (name === undefined ? `/proc/self/fd/${handle.fd}` : `/proc/self/fd/${handle.fd}/${name}`);

export async function openDirInRoot(root: string, targetPath: string): Promise<RootedDir> {
  const refuse = (problem: string) =>
    new DsoError("DELIVERY_REFUSED", `target path ${printableName(targetPath)} ${problem}`, {
      hint: "deliver into a --tmpfs mount that is a plain directory in the container",
    });
  // The root itself is the one link we follow on purpose: /proc/<pid>/root.
  const rootHandle = await open(root, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => {
    throw refuse("cannot be reached: the container's root is not visible from here");
  });
  /** Open directories from the root down to the current component; [0] is the root. */
  const stack: FileHandle[] = [rootHandle];
  const names: string[] = [];
  const closeAbove = async (depth: number) => {
    while (stack.length > depth) await stack.pop()!.close();
    names.length = Math.max(0, depth - 1);
  };
  try {
    const pending = splitPath(targetPath);
    let hops = 0;
    while (pending.length > 0) {
      const component = pending.shift()!;
      if (component === "..") {
        if (stack.length === 1) throw refuse("leads out of the container's root");
        await closeAbove(stack.length - 1);
        continue;
      }
      const parent = stack.at(-1)!;
      const where = `/${[...names, component].join("/")}`;
      let child: FileHandle | undefined;
      try {
        child = await open(fdPath(parent, component), OPEN_DIR_FLAGS);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === "ENOENT") throw refuse(`does not exist in the container (at ${printableName(where)})`);
        if (code !== "ELOOP" && code !== "ENOTDIR") throw refuse(`cannot be opened at ${printableName(where)} (${code ?? "error"})`);
        // O_NOFOLLOW|O_DIRECTORY on a symlink fails with ELOOP or ENOTDIR: tell a link from a file.
        const entry = await lstat(fdPath(parent, component)).catch(() => undefined);
        if (!entry?.isSymbolicLink()) throw refuse(`has a non-directory at ${printableName(where)}`);
      }
      if (child) {
        stack.push(child);
        names.push(component);
        continue;
      }
      // A symlink: read it relative to its parent's fd, never by a path.
      if (++hops > MAX_SYMLINK_HOPS) throw refuse("has too many levels of symbolic links");
      const link = await readlink(fdPath(parent, component));
      if (link.startsWith("/")) await closeAbove(1);
      pending.unshift(...splitPath(link));
    }
    if (stack.length === 1) throw refuse("is the container's root directory");
    const target = stack.pop()!;
    const containerPath = `/${names.join("/")}`;
    await closeAbove(0).catch(() => {});
    return { path: fdPath(target), containerPath, close: () => target.close() };
  } catch (error) {
    await closeAbove(0).catch(() => {});
    throw error;
  }
}

function splitPath(path: string): string[] {
  return path.split("/").filter((part) => part !== "" && part !== ".");
}
