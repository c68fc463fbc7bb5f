/**
 * The atomic writer for a directory the agent reaches by path (plugin volumes, procfs targets).
 * New files go into a fresh version directory; `..data` is switched to it with one rename(2);
 * then the old version and names no longer in the set are removed. See layout.ts.
 *
 * `dir` may sit inside a container's root (procfs mode) or be bind-mounted into a container
 * (plugin mode), so its contents are controlled by the container, which can race us. Every
 * operation is therefore anchored at a directory fd (`/proc/self/fd/<fd>/<name>`), so only the
 * last component is ever looked up, and that one is never followed: files are created with
 * O_CREAT|O_EXCL|O_NOFOLLOW inside the version directory's own fd, links are replaced with
 * rename(2), removal unlinks entries one by one (never a recursive delete that could follow).
 *
 * For a strategy that must be able to undo a rotation (`signal` with a HEALTHCHECK), a write can
 * keep the version `..data` pointed to before (`keepPrevious`); `restoreAtomicVersion` switches
 * `..data` back to it (opened O_NOFOLLOW through the target's fd, so a link the container put in
 * its place is refused, never followed) and drops the failed version; `pruneAtomicDir` drops
 * every version but the current one once the new one is proven. A kept version lives on the
 * same tmpfs as the current one, for the health window only.
 *
 * The container also controls how many entries the directory holds. It is read as a stream, a
 * batch of entries at a time, keeping only names DSO may own (version directories, symbolic
 * links); past MAX_TARGET_ENTRIES entries the write is refused before anything is written, with
 * an error for that container alone (a million entries took the agent to 1.18 GB and blocked
 * its event loop ~10 s when the whole listing was read and looked at at once).
 */
import { constants, writeSync } from "node:fs";
import type { Dirent } from "node:fs";
import { DIRENT_TYPE, forEachDirEntry, libcAvailable } from "../os/libc.ts";
import { lstat, mkdir, open, opendir, readlink, rename, rmdir, symlink, unlink, type FileHandle } from "node:fs/promises";
import { DsoError } from "../errors.ts";
import { fdPath } from "./container-root.ts";
import { assertValidFileSet, nameProblem, printableName } from "./file-names.ts";
import { DATA_LINK, DATA_LINK_TMP, isMarker, isVersionName, nameLinkTarget, newVersionName, VERSION_MARKER, VERSION_PREFIX } from "./layout.ts";
import { VERSION_DIR_MODE, type SecretFile } from "./types.ts";
import { mapLimit } from "../util/map-limit.ts";

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPEN_DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** Until its owner and mode are set, a new file is readable by nobody but us. */
const CREATE_MODE = 0o600;
/**
 * At most this many entries in a target (or version) directory are looked at. DSO's own are a
 * link per file, `..data` and a version or two; the rest belongs to the container.
 */
export const MAX_TARGET_ENTRIES = 10_000;
/** Entries per batch in the fallback without the C library (Bun's opendir reads everything first). */
const SCAN_BATCH = 256;
/** Stale entries removed at a time. */
const REMOVE_CONCURRENCY = 16;

/** What a scan of a target directory found that DSO may have made. */
interface OwnEntries {
  versions: string[];
  /** Symbolic links (or entries of unknown type) not among the names being written. */
  links: string[];
}

export interface AtomicWriteResult {
  version: string;
  bytes: number;
  /** The version kept beside the new one (`keepPrevious`), if there was one. */
  kept?: string;
}

export interface AtomicWriteOptions {
  /** Keep the version `..data` pointed to before, to switch back to (restoreAtomicVersion). */
  keepPrevious?: boolean;
}

/** A delivery result's `kept` / `notKept` for a write with `opts` (modes built on this writer). */
export function keptOrWhy(opts: AtomicWriteOptions | undefined, kept: string | undefined): { kept?: string; notKept?: string } {
  if (!opts?.keepPrevious) return {};
  return kept ? { kept } : { notKept: "the target held no earlier version" };
}

/** The directory itself is trusted (ours, or an fd path from container-root.ts); its contents are not. */
async function openTarget(dir: string): Promise<FileHandle> {
  return open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
}

/** Writes `files` (and the version marker) as a new version in `dir` and switches to it atomically. */
export async function writeAtomicDir(dir: string, files: readonly SecretFile[], marker?: string, opts: AtomicWriteOptions = {}): Promise<AtomicWriteResult> {
  const names = assertValidFileSet(files);
  if (marker !== undefined && !isMarker(marker)) throw new DsoError("INTERNAL", "invalid version marker");
  const version = newVersionName();
  const target = await openTarget(dir);
  try {
    // Before anything is written: a directory too full to scan gets nothing.
    const stale = await scanOwnEntries(target, new Set(names));
    const kept = opts.keepPrevious ? await currentVersionDir(target) : undefined;
    await mkdir(fdPath(target, version), { mode: VERSION_DIR_MODE });
    let bytes = 0;
    try {
      // Opened without following: if the container swapped it for a link, this fails (ELOOP).
      const versionDir = await open(fdPath(target, version), OPEN_DIR_NOFOLLOW);
      try {
        // Independent files in a fresh directory: write them concurrently.
        const sizes = await Promise.all(files.map((file) => writeSecretFile(fdPath(versionDir, file.name), file)));
        bytes = sizes.reduce((sum, size) => sum + size, 0);
        if (marker) await symlink(marker, fdPath(versionDir, VERSION_MARKER));
      } finally {
        await versionDir.close();
      }
      await switchDataLink(target, version);
    } catch (error) {
      await removeVersionDir(target, version);
      throw error;
    }
    await linkNames(target, names, version);
    await removeStale(target, kept ? { ...stale, versions: stale.versions.filter((v) => v !== kept) } : stale, true);
    return { version, bytes, ...(kept ? { kept } : {}) };
  } finally {
    await target.close();
  }
}

/**
 * The version marker of the version `..data` points to, or undefined when there is none. Only
 * single components are looked up, each through the fd of its parent, never following a link the
 * container may have planted in place of the version directory.
 */
export async function readAtomicMarker(dir: string): Promise<string | undefined> {
  const target = await openTarget(dir);
  try {
    const version = await readLinkOrUndefined(fdPath(target, DATA_LINK));
    if (!version || !isVersionName(version) || version.includes("/")) return undefined;
    const versionDir = await open(fdPath(target, version), OPEN_DIR_NOFOLLOW).catch(() => undefined);
    if (!versionDir) return undefined;
    try {
      const marker = await readLinkOrUndefined(fdPath(versionDir, VERSION_MARKER));
      return isMarker(marker) ? marker : undefined;
    } finally {
      await versionDir.close();
    }
  } finally {
    await target.close();
  }
}

/**
 * Switches `..data` back to `version` (kept by a write with `keepPrevious`), links its names, and
 * removes every other version (the failed one: its values leave the tmpfs) and the name links only
 * it had. Refused when `version` is not a real directory of `dir` (a link in its place is never
 * followed); `..data` is then left as it was.
 */
export async function restoreAtomicVersion(dir: string, version: string): Promise<void> {
  if (!isVersionName(version) || version.includes("/")) throw new DsoError("INTERNAL", "invalid version name");
  const target = await openTarget(dir);
  try {
    const versionDir = await open(fdPath(target, version), OPEN_DIR_NOFOLLOW).catch(() => undefined);
    if (!versionDir) throw new DsoError("DELIVERY_FAILED", "the kept previous version is gone or is no longer a directory; it cannot be restored");
    let names: string[];
    try {
      names = await fileNamesIn(versionDir);
    } finally {
      await versionDir.close();
    }
    const stale = await scanOwnEntries(target, new Set(names));
    await switchDataLink(target, version);
    await linkNames(target, names, version);
    await removeStale(target, stale, true);
  } finally {
    await target.close();
  }
}

/** Removes every version but the one `..data` points to (a kept previous one, once the new one is proven). */
export async function pruneAtomicDir(dir: string): Promise<void> {
  const target = await openTarget(dir);
  try {
    const { versions } = await scanOwnEntries(target, new Set());
    await removeStale(target, { versions, links: [] }, true);
  } finally {
    await target.close();
  }
}

/** The version directory `..data` names, when it is one (not checked to be a directory: removal never follows). */
async function currentVersionDir(target: FileHandle): Promise<string | undefined> {
  const version = await readLinkOrUndefined(fdPath(target, DATA_LINK));
  return version && isVersionName(version) && !version.includes("/") ? version : undefined;
}

/** The secret files of a version directory (plain files with valid names), read through its fd; bounded. */
async function fileNamesIn(versionDir: FileHandle): Promise<string[]> {
  const names: string[] = [];
  let seen = 0;
  await forEachEntry(fdPath(versionDir), (name, type) => {
    if (type === DIRENT_TYPE.REG && name !== VERSION_MARKER && !nameProblem(name)) names.push(name);
    return ++seen < MAX_TARGET_ENTRIES;
  });
  return names;
}

/** Removes everything the atomic writer put in `dir` (versions, ..data, name links); leaves the rest. */
export async function clearAtomicDir(dir: string): Promise<void> {
  const target = await openTarget(dir);
  try {
    await removeStale(target, await scanOwnEntries(target, new Set()), false);
    await unlink(fdPath(target, DATA_LINK)).catch(ignoreMissing);
    await unlink(fdPath(target, DATA_LINK_TMP)).catch(ignoreMissing);
  } finally {
    await target.close();
  }
}

async function writeSecretFile(path: string, file: SecretFile): Promise<number> {
  const handle = await open(path, CREATE_FLAGS, CREATE_MODE);
  try {
    // write(2) straight from the value's buffer: an async write would hand the runtime a copy
    // of it, which outlives the wipe of ours (measured: docs/security.md). tmpfs writes do not block.
    for (let at = 0; at < file.content.byteLength; ) at += writeSync(handle.fd, file.content, at, file.content.byteLength - at);
    // chown before chmod: chown clears set-id bits, and the final mode must be exactly file.mode.
    await handle.chown(file.uid, file.gid);
    await handle.chmod(file.mode);
  } finally {
    await handle.close();
  }
  return file.content.byteLength;
}

async function switchDataLink(target: FileHandle, version: string): Promise<void> {
  // One temporary name per version: two writers into one directory (a shared DSO volume) never
  // collide. A crash between symlink and rename leaves it behind; unlink never follows it.
  const tmp = fdPath(target, `${DATA_LINK_TMP}${version.slice(VERSION_PREFIX.length - 1)}`);
  await unlink(tmp).catch(ignoreMissing);
  await symlink(version, tmp);
  await rename(tmp, fdPath(target, DATA_LINK));
}

/** Makes `<name> -> ..data/<name>` for each name, replacing anything else at that path atomically. */
async function linkNames(target: FileHandle, names: readonly string[], version: string): Promise<void> {
  await Promise.all(names.map((name, index) => linkName(target, name, `${version.slice(VERSION_PREFIX.length)}_${index}`)));
}

async function linkName(target: FileHandle, name: string, unique: string): Promise<void> {
  const path = fdPath(target, name);
  if ((await readLinkOrUndefined(path)) === nameLinkTarget(name)) return;
  // One temporary name per index: the links are made concurrently.
  // Unique per write and name; not a "..dso_" name, so a concurrent cleanup leaves it alone.
  const tmp = fdPath(target, `..link_tmp_${unique}`);
  await unlink(tmp).catch(ignoreMissing);
  await symlink(nameLinkTarget(name), tmp);
  try {
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(ignoreMissing);
    throw new DsoError("DELIVERY_FAILED", `cannot place secret file ${printableName(name)}: a directory of that name is in the way`, {
      cause: error,
    });
  }
}

/**
 * Deletes a version directory entry by entry through its own fd. A link in its place is only
 * unlinked; anything the container put inside that is not a plain entry is left alone.
 */
async function removeVersionDir(target: FileHandle, version: string): Promise<void> {
  const path = fdPath(target, version);
  const stats = await lstat(path).catch(() => undefined);
  if (!stats) return;
  if (!stats.isDirectory()) {
    await unlink(path).catch(() => {});
    return;
  }
  const dir = await open(path, OPEN_DIR_NOFOLLOW).catch(() => undefined);
  if (!dir) return;
  try {
    // Bounded: a version directory the container filled is left (rmdir then fails).
    const names: string[] = [];
    await forEachEntry(fdPath(dir), (name) => names.push(name) < MAX_TARGET_ENTRIES);
    for (const name of names) await unlink(fdPath(dir, name)).catch(() => {});
  } finally {
    await dir.close();
  }
  await rmdir(path).catch(() => {});
}

/** Each entry's name and d_type in turn, until `visit` returns false; memory bounded by `visit`. */
async function forEachEntry(path: string, visit: (name: string, type: number) => boolean): Promise<void> {
  if (libcAvailable()) return forEachDirEntry(path, visit);
  for await (const entry of await opendir(path, { bufferSize: SCAN_BATCH })) if (!visit(entry.name, direntType(entry))) return;
}

function direntType(entry: Dirent): number {
  if (entry.isSymbolicLink()) return DIRENT_TYPE.LNK;
  if (entry.isDirectory()) return DIRENT_TYPE.DIR;
  if (entry.isFile()) return DIRENT_TYPE.REG;
  return DIRENT_TYPE.UNKNOWN;
}

/**
 * Reads `target` an entry at a time, keeping only entries DSO may have made: version directories,
 * and links (or entries of unknown type) not in `keep`, candidates for stale name links. Refuses a
 * directory with more than MAX_TARGET_ENTRIES entries, so memory and time stay bounded whatever
 * the container put there.
 */
async function scanOwnEntries(target: FileHandle, keep: ReadonlySet<string>): Promise<OwnEntries> {
  const found: OwnEntries = { versions: [], links: [] };
  let seen = 0;
  await forEachEntry(fdPath(target), (name, type) => {
    if (++seen > MAX_TARGET_ENTRIES) return false;
    if (isVersionName(name)) found.versions.push(name);
    else if (!keep.has(name) && name !== DATA_LINK && (type === DIRENT_TYPE.LNK || type === DIRENT_TYPE.UNKNOWN)) found.links.push(name);
    return true;
  });
  if (seen > MAX_TARGET_ENTRIES) {
    throw new DsoError("DELIVERY_REFUSED", `the target directory holds more than ${MAX_TARGET_ENTRIES.toLocaleString("en-US")} entries; DSO reads no further`, {
      hint: "remove what the container put there, or give the secrets a --tmpfs mount of their own",
    });
  }
  return found;
}

/**
 * Removes what a scan found: version directories (but the one `..data` points to now, with
 * `keepCurrent`), and
 * links that point into `..data` (names no longer in the set). Entries made after the scan (a
 * concurrent writer's) are left for the next write.
 */
async function removeStale(target: FileHandle, stale: OwnEntries, keepCurrent: boolean): Promise<void> {
  const current = keepCurrent ? await readLinkOrUndefined(fdPath(target, DATA_LINK)) : undefined;
  await mapLimit(stale.versions, REMOVE_CONCURRENCY, async (entry) => {
    if (entry !== current) await removeVersionDir(target, entry);
  });
  await mapLimit(stale.links, REMOVE_CONCURRENCY, async (entry) => {
    const path = fdPath(target, entry);
    if ((await readLinkOrUndefined(path)) === nameLinkTarget(entry)) await unlink(path).catch(ignoreMissing);
  });
}

async function readLinkOrUndefined(path: string): Promise<string | undefined> {
  try {
    const stats = await lstat(path);
    return stats.isSymbolicLink() ? await readlink(path) : undefined;
  } catch (error) {
    ignoreMissing(error);
    return undefined;
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as { code?: string }).code !== "ENOENT") throw error;
}
