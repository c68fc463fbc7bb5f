/**
 * The file provider's directory as a secret store for `dso secret set|get|list|rm`. Secret
 * `a/b` is the file `<dir>/a/b` (the provider also reads `<dir>/a/b.json`). Directories DSO creates
 * are 0700, files 0600, written to a temporary file in the same directory, synced and renamed
 * over the old one, so the provider never reads half a value. A directory that group or others
 * can enter, or a link on the way, is refused: the store is for root's (or the agent user's) eyes.
 */
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeSync, constants } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { DsoError } from "../errors.ts";
import { printable } from "../util/printable.ts";

const JSON_SUFFIX = ".json";
const TEMP_PREFIX = ".dso-tmp-";

/** The segments of a secret name, or a usage error naming the rule it breaks. */
export function nameSegments(name: string): string[] {
  const segments = name.split("/");
  const bad = (why: string) => new DsoError("USAGE", `secret name ${printable(name, 128)} ${why}`);
  if (name === "" || name.startsWith("/")) throw bad("must be a relative name such as db_password or app/db");
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad("must not hold control characters");
  if (segments.some((s) => s === "" || s === "." || s === "..")) throw bad("must not have empty, . or .. segments");
  if (segments.some((s) => s.startsWith(TEMP_PREFIX))) throw bad(`must not start a segment with ${TEMP_PREFIX}`);
  return segments;
}

function privateDir(path: string, create: boolean): boolean {
  let info;
  try {
    info = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT" || !create) return false;
    // The store's root may be several levels down (dso.yaml's path: /srv/dso/secrets): created
    // with its parents, 0700 each (under the umask).
    mkdirSync(path, { mode: 0o700, recursive: true });
    info = lstatSync(path);
  }
  if (info.isSymbolicLink() || !info.isDirectory()) throw new DsoError("USAGE", `${path} is not a directory (links are not followed)`);
  if ((info.mode & 0o077) !== 0) {
    throw new DsoError("USAGE", `${path} is open to group or others (mode ${(info.mode & 0o777).toString(8)}); the store must be 0700`, {
      hint: `chmod 700 ${path}`,
    });
  }
  return true;
}

/** The directory that holds `name`'s file, checked (and created when `create`) segment by segment. */
function parentOf(root: string, segments: string[], create: boolean): string | undefined {
  if (!privateDir(root, create)) return undefined;
  let dir = root;
  for (const segment of segments.slice(0, -1)) {
    dir = join(dir, segment);
    if (!privateDir(dir, create)) return undefined;
  }
  return dir;
}

/** Writes `value` as secret `name`, atomically, 0600. */
export function writeSecret(root: string, name: string, value: Uint8Array): string {
  const segments = nameSegments(name);
  const dir = parentOf(root, segments, true)!;
  const path = join(dir, segments.at(-1)!);
  const temp = join(dir, `${TEMP_PREFIX}${randomBytes(6).toString("hex")}`);
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  let open = true;
  try {
    for (let off = 0; off < value.length; ) off += writeSync(fd, value, off);
    fsyncSync(fd);
    open = false;
    closeSync(fd);
    renameSync(temp, path);
  } catch (error) {
    if (open) closeSync(fd);
    // Never leave the value behind in a temporary file (rename failed: a directory in the way).
    rmSync(temp, { force: true });
    throw error;
  }
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return path;
}

/** The file that holds `name` (`name` or `name.json`), undefined when there is none. */
export function secretFile(root: string, name: string): string | undefined {
  const segments = nameSegments(name);
  const dir = parentOf(root, segments, false);
  if (!dir) return undefined;
  for (const candidate of [segments.at(-1)!, `${segments.at(-1)!}${JSON_SUFFIX}`]) {
    const path = join(dir, candidate);
    try {
      const info = lstatSync(path);
      if (info.isFile()) return path;
    } catch {
      // not there: try the next spelling
    }
  }
  return undefined;
}

export function readSecret(root: string, name: string): Uint8Array | undefined {
  const path = secretFile(root, name);
  return path ? new Uint8Array(readFileSync(path, { flag: constants.O_RDONLY | constants.O_NOFOLLOW })) : undefined;
}

export function removeSecret(root: string, name: string): boolean {
  const path = secretFile(root, name);
  if (!path) return false;
  unlinkSync(path);
  return true;
}

export interface StoredSecret {
  name: string;
  bytes: number;
  modified: Date;
}

/** Every secret under `root` (not following links), by name. */
export function listSecrets(root: string): StoredSecret[] {
  if (!privateDir(root, false)) return [];
  const out: StoredSecret[] = [];
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(TEMP_PREFIX)) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, `${prefix}${entry.name}/`);
      else if (entry.isFile()) {
        const info = lstatSync(path);
        const base = entry.name.endsWith(JSON_SUFFIX) ? entry.name.slice(0, -JSON_SUFFIX.length) : entry.name;
        out.push({ name: `${prefix}${base}`, bytes: info.size, modified: info.mtime });
      }
    }
  };
  walk(root, "");
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
