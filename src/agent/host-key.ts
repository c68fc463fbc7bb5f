/**
 * The per-host key of the version markers (secrets/version-marker.ts), of Swarm secret names, and
 * the root of each provider instance's fingerprint key (fingerprintKeyFor). Kept in a 0600 file on the
 * tmpfs of the DSO volume root, so an agent restart — or a `dso inject` run without an agent —
 * computes the same markers and nothing is rotated twice; gone at reboot with everything else on
 * tmpfs. Where that directory is not RAM-backed the key stays in memory only (an agent restart
 * then re-delivers each file set once, without running strategies).
 */
import { createHmac, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isRamBacked, privateDirProblem } from "../delivery/tmpfs.ts";

export const HOST_KEY_FILE = ".version-key";
const KEY_BYTES = 32;

export interface HostKey {
  key: Uint8Array;
  /** Where it is kept, or undefined when in memory only. */
  path?: string;
}

export async function loadHostKey(dir: string, create = true): Promise<HostKey> {
  const path = join(dir, HOST_KEY_FILE);
  if (!(await isRamBacked(dir).catch(() => false))) return { key: randomBytes(KEY_BYTES) };
  // A directory others can write to may hold a key they planted (issue 18, finding 6).
  if ((await privateDirProblem(dir).catch(() => "unreadable")) !== undefined) return { key: randomBytes(KEY_BYTES) };
  const existing = await readFile(path).catch(() => undefined);
  if (existing?.byteLength === KEY_BYTES) return { key: new Uint8Array(existing), path };
  if (!create) return { key: randomBytes(KEY_BYTES) };
  const key = randomBytes(KEY_BYTES);
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await handle.writeFile(key);
    } finally {
      await handle.close();
    }
    return { key: new Uint8Array(key), path };
  } catch {
    // Another process created it meanwhile: use theirs.
    const raced = await readFile(path).catch(() => undefined);
    return raced?.byteLength === KEY_BYTES ? { key: new Uint8Array(raced), path } : { key: new Uint8Array(key) };
  }
}

/**
 * The key a provider instance makes value fingerprints with (file, Vault KV v1; sent in `configure`
 * as `fingerprintKey`): one per host and instance, so a fingerprint seen on one host or of one
 * instance tells nothing about another, and stable for as long as the host key is.
 */
export function fingerprintKeyFor(hostKey: Uint8Array, providerInstance: string): string {
  return createHmac("sha256", hostKey).update(`dso fingerprint v1\0${providerInstance}`).digest("hex");
}
