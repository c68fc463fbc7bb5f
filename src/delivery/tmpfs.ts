import { constants } from "node:fs";
import { access, open, stat, statfs, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

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
