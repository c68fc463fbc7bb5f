import { statfs } from "node:fs/promises";
import { dirname } from "node:path";

/** f_type of a tmpfs (linux/magic.h). ramfs is RAM-backed too. */
export const TMPFS_MAGIC = 0x01021994;
export const RAMFS_MAGIC = 0x858458f6;

export async function isRamBacked(path: string): Promise<boolean> {
  const stats = await statfs(path);
  return stats.type === TMPFS_MAGIC || stats.type === RAMFS_MAGIC;
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
