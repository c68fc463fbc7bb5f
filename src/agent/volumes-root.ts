/**
 * Plugin mode needs its volume root on tmpfs. When it is not one and the agent runs as root, the
 * agent mounts a small tmpfs there (nothing has been written yet, so nothing reaches the disk)
 * with the mount(2) syscall: no `mount` binary is needed, so the same code runs on a host, in a
 * distroless image and in the managed plugin's rootfs. A root that is already a tmpfs must be the
 * agent's own and closed to others (0700): one that others may write to could hold a planted
 * marker key or volume record, one they may walk into shows them the volumes' files.
 */
import { mkdir } from "node:fs/promises";
import { DsoError } from "../errors.ts";
import { volumeRootMountCommand } from "../delivery/plugin/volume-driver.ts";
import { isRamBacked, nearestExisting, securePrivateDir } from "../delivery/tmpfs.ts";
import { ERRNO, LibcError, mountTmpfs } from "../os/libc.ts";

/** 0700: host users must not reach a volume's files (each volume is its own tmpfs below, 0755). */
export const VOLUMES_TMPFS_OPTIONS = "mode=0700,size=64m";

/** What to do about it, for the errors a mount(2) of a tmpfs can meet here. */
function mountHint(root: string, error: unknown): string {
  const byHand = volumeRootMountCommand(root);
  if (error instanceof LibcError && error.errno === ERRNO.EPERM) {
    return `the agent lacks CAP_SYS_ADMIN: grant it (systemd CapabilityBoundingSet, docker run --cap-add SYS_ADMIN) or mount the tmpfs before the agent starts: ${byHand}`;
  }
  return `mount it before the agent starts: ${byHand}`;
}

export async function ensureTmpfsRoot(root: string): Promise<"already" | "mounted"> {
  const existing = await nearestExisting(root);
  if (existing === root && (await isRamBacked(root))) {
    await securePrivateDir(root, "volume root", `mount a tmpfs of root's own there: ${volumeRootMountCommand(root)}`);
    return "already";
  }
  if (process.getuid?.() !== 0) {
    throw new DsoError("DELIVERY_REFUSED", `volume root ${root} is not a tmpfs and only root can mount one`, {
      hint: volumeRootMountCommand(root),
    });
  }
  await mkdir(root, { recursive: true, mode: 0o700 });
  try {
    mountTmpfs(root, VOLUMES_TMPFS_OPTIONS);
  } catch (error) {
    throw new DsoError("DELIVERY_REFUSED", `could not mount a tmpfs on ${root}: ${(error as Error).message}`, { hint: mountHint(root, error) });
  }
  if (!(await isRamBacked(root))) throw new DsoError("DELIVERY_REFUSED", `mounted a tmpfs on ${root} but statfs does not see one there`);
  return "mounted";
}
