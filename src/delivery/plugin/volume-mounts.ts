/**
 * One small tmpfs per DSO volume, mounted on <root>/<volume> at its first Mount and unmounted when
 * its last container leaves (or at Remove). Containers mount their volume read-write, so with one
 * shared tmpfs a container that filled its volume (`dd`) made every other volume's Mount and
 * rotation fail with ENOSPC; now it fills only its own. The size fits the volume's files twice
 * (the atomic writer writes the new version before it drops the old one), in whole pages, plus
 * VOLUME_TMPFS_SLACK_BYTES; a rotation to bigger files grows it first (a remount keeps the files).
 * A tmpfs size is a limit, not a reservation: an unused volume costs no memory.
 *
 * A mount is only of use where dockerd sees it: the agent's mount namespace is the host's, or the
 * volume root is a shared mount (the managed plugin's propagated mount, `-v ...:rshared`). Where
 * it is not (a systemd unit with a private namespace) or the agent may not mount (no
 * CAP_SYS_ADMIN), volumes are plain directories on the root's tmpfs, as before, and say so once.
 */
import { mkdir, readdir, readFile, readlink, rm, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { DsoError } from "../../errors.ts";
import type { FieldLogger } from "../../log/logger.ts";
import { ERRNO, LibcError, MNT_DETACH, mountTmpfs, remountTmpfs, unmount } from "../../os/libc.ts";
import { mountOf, openRamMountRoot, parseMountinfo } from "../tmpfs.ts";
import type { SecretFile } from "../types.ts";

/** Room beyond two copies of the files: the links, the marker, and a little growth between rotations. */
export const VOLUME_TMPFS_SLACK_BYTES = 1024 * 1024;
/** The volume's own directory, as the container sees it: walkable by its app user, writable by root only. */
export const VOLUME_DIR_MODE = 0o755;
const PAGE_BYTES = 4096;
/** Inodes beyond four per file (two versions of each file and its name link): directories, links, marker. */
const SLACK_INODES = 64;

export interface VolumeMounts {
  /** True when each volume gets its own tmpfs. */
  readonly bounded: boolean;
  /**
   * Makes `dir` ready for `files`: its own tmpfs (mounted when absent and `create`, grown when too
   * small), or a plain directory where volumes are not bounded.
   */
  prepare(dir: string, files: readonly SecretFile[], create: boolean): Promise<void>;
  /** Unmounts the volume's tmpfs and removes its directory; the caller wiped its files first. */
  remove(dir: string): Promise<void>;
}

/** Bytes a volume's tmpfs needs for `files`: two versions in whole pages, plus the slack. */
export function tmpfsSizeFor(files: readonly SecretFile[]): number {
  const pages = files.reduce((sum, file) => sum + Math.ceil(file.content.byteLength / PAGE_BYTES), 0);
  return 2 * pages * PAGE_BYTES + VOLUME_TMPFS_SLACK_BYTES;
}

export function tmpfsInodesFor(files: readonly SecretFile[]): number {
  return 4 * files.length + SLACK_INODES;
}

function tmpfsOptions(files: readonly SecretFile[]): string {
  return `size=${tmpfsSizeFor(files)},nr_inodes=${tmpfsInodesFor(files)}`;
}

/**
 * Whether a tmpfs mounted under `root` here is what dockerd sees: as root, in the host's mount
 * namespace (the same as PID 1's, when that can be read), or on a root that is not a slave mount.
 * A slave (a systemd unit's private namespace) receives the host's mounts but sends none back. A
 * shared root (the managed plugin's propagated mount, `-v /run/dso:/run/dso:rshared` as
 * docs/deploy.md says) sends them; a private one is the host's own namespace (a container that
 * binds the root without rshared cannot serve plugin mode at all: `dso doctor` says so).
 */
export async function mountsReachDockerd(root: string): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  const [own, init] = await Promise.all([readlink("/proc/self/ns/mnt").catch(() => "self"), readlink("/proc/1/ns/mnt").catch(() => "init")]);
  if (own === init) return true;
  const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return mountOf(root, parseMountinfo(table))?.propagation !== "slave";
}

export function volumeMounts(enabled: boolean, log: Pick<FieldLogger, "info" | "warn">): VolumeMounts {
  let bounded = enabled;
  let warnedLegacy = false;

  async function mountFresh(dir: string, files: readonly SecretFile[]): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      mountTmpfs(dir, `mode=${VOLUME_DIR_MODE.toString(8).padStart(4, "0")},${tmpfsOptions(files)}`);
    } catch (error) {
      if (!(error instanceof LibcError) || error.errno !== ERRNO.EPERM) throw mountFailed(dir, error);
      bounded = false;
      log.warn("cannot mount a tmpfs per DSO volume (no CAP_SYS_ADMIN): volumes share the volume root's tmpfs, so one container filling its volume fills them all", {
        volume: dir,
      });
    }
  }

  async function growIfSmall(dir: string, files: readonly SecretFile[]): Promise<void> {
    const { blocks, bsize } = await statfs(dir);
    if (blocks * bsize >= tmpfsSizeFor(files)) return;
    try {
      remountTmpfs(dir, tmpfsOptions(files));
    } catch (error) {
      throw mountFailed(dir, error);
    }
    log.info("grew the tmpfs of a DSO volume for bigger files", { volume: dir, bytes: tmpfsSizeFor(files) });
  }

  return {
    get bounded() {
      return bounded;
    },
    async prepare(dir, files, create) {
      const own = await openRamMountRoot(dir);
      if (own) {
        await own.close();
        return growIfSmall(dir, files);
      }
      const entries = await readdir(dir).catch(() => undefined);
      if (entries === undefined) {
        if (!create) return; // not mounted: the write fails as it did before, nothing is created
        if (bounded) return mountFresh(dir, files);
        await mkdir(dir, { recursive: true, mode: VOLUME_DIR_MODE });
        return;
      }
      if (entries.length === 0 && bounded) return mountFresh(dir, files);
      // A plain directory with files: a volume in use since before volumes had their own tmpfs
      // (its containers hold that directory), or volumes are not bounded here. Keep writing there.
      if (bounded && !warnedLegacy) {
        warnedLegacy = true;
        log.warn("a DSO volume in use is a plain directory on the volume root (mounted by an older agent): it gets its own tmpfs at its next first Mount", { volume: dir });
      }
    },
    async remove(dir) {
      const [self, parent] = await Promise.all([stat(dir).catch(() => undefined), stat(dirname(dir)).catch(() => undefined)]);
      if (self && parent && self.dev !== parent.dev) {
        try {
          unmount(dir, MNT_DETACH);
        } catch (error) {
          log.warn("could not unmount a DSO volume's tmpfs", { volume: dir, error: (error as Error).message });
        }
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function mountFailed(dir: string, error: unknown): DsoError {
  return new DsoError("DELIVERY_FAILED", `could not mount the tmpfs of DSO volume ${dir}: ${(error as Error).message}`, { cause: error });
}
