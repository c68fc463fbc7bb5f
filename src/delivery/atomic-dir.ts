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
 */
import { constants, writeSync } from "node:fs";
import { lstat, mkdir, open, readdir, readlink, rename, rmdir, symlink, unlink, type FileHandle } from "node:fs/promises";
import { DsoError } from "../errors.ts";
import { fdPath } from "./container-root.ts";
import { assertValidFileSet, printableName } from "./file-names.ts";
import { DATA_LINK, DATA_LINK_TMP, isMarker, isVersionName, nameLinkTarget, newVersionName, VERSION_MARKER, VERSION_PREFIX } from "./layout.ts";
import { VERSION_DIR_MODE, type SecretFile } from "./types.ts";

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPEN_DIR_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** Until its owner and mode are set, a new file is readable by nobody but us. */
const CREATE_MODE = 0o600;

export interface AtomicWriteResult {
  version: string;
  bytes: number;
}

/** The directory itself is trusted (ours, or an fd path from container-root.ts); its contents are not. */
async function openTarget(dir: string): Promise<FileHandle> {
  return open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
}

/** Writes `files` (and the version marker) as a new version in `dir` and switches to it atomically. */
export async function writeAtomicDir(dir: string, files: readonly SecretFile[], marker?: string): Promise<AtomicWriteResult> {
  const names = assertValidFileSet(files);
  if (marker !== undefined && !isMarker(marker)) throw new DsoError("INTERNAL", "invalid version marker");
  const version = newVersionName();
  const target = await openTarget(dir);
  try {
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
    await removeStale(target, version, new Set(names));
    return { version, bytes };
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

/** Removes everything the atomic writer put in `dir` (versions, ..data, name links); leaves the rest. */
export async function clearAtomicDir(dir: string): Promise<void> {
  const target = await openTarget(dir);
  try {
    await removeStale(target, undefined, new Set());
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
    for (const entry of await readdir(fdPath(dir))) await unlink(fdPath(dir, entry)).catch(() => {});
  } finally {
    await dir.close();
  }
  await rmdir(path).catch(() => {});
}

/** Old version directories and name links that point into ..data but are not in `keep`. */
async function removeStale(target: FileHandle, currentVersion: string | undefined, keep: ReadonlySet<string>): Promise<void> {
  const removals = (await readdir(fdPath(target))).map(async (entry) => {
    if (isVersionName(entry)) {
      if (entry !== currentVersion) await removeVersionDir(target, entry);
      return;
    }
    if (keep.has(entry)) return;
    const path = fdPath(target, entry);
    if ((await readLinkOrUndefined(path)) === nameLinkTarget(entry)) await unlink(path).catch(ignoreMissing);
  });
  await Promise.all(removals);
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
