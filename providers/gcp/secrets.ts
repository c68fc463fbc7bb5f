/**
 * Secret Manager names, versions and payloads. A DSO secret name is a secret id of the
 * configured project (`db-password`) or a full resource name (`projects/<p>/secrets/<id>`, for
 * another project); a version is a positive number or `latest`. A payload is bytes: valid UTF-8
 * that is a JSON object gives its keys (non-strings JSON-encoded), other UTF-8 is the key `value`,
 * anything else is the key `value` as raw bytes. Payloads are checked against their CRC32C.
 */
import { ProviderError } from "../errors.ts";
import type { SecretValue } from "../../src/rpc/protocol.ts";
import type { SecretRef } from "../types.ts";
import { jsonObjectKeys } from "../json-keys.ts";

/** Secret Manager's rule for a secret id. */
const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/;
const FULL_NAME = /^projects\/([^/]+)\/secrets\/([^/]+)$/;
const PROJECT = /^(?:(?:[a-z0-9-]+\.)+[a-z]{2,}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,20}$/;
const VERSION_NAME = /\/versions\/([1-9][0-9]{0,18})$/;

export const printable = (s: string) => s.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);

export interface SecretTarget {
  /** `projects/<p>/secrets/<id>`. */
  path: string;
  /** A pinned version number; undefined follows the newest enabled version. */
  version?: number;
}

export function secretTarget(ref: SecretRef, project: string, who: string): SecretTarget {
  const what = `${who}: secret "${printable(ref.name)}"`;
  if (ref.stage !== undefined) throw new ProviderError("CONFIG_INVALID", `${what}: Secret Manager has versions, not stages (use version)`);
  const full = FULL_NAME.exec(ref.name);
  const [p, id] = full ? [full[1]!, full[2]!] : [project, ref.name];
  if (!PROJECT.test(p) || !SECRET_ID.test(id)) {
    throw new ProviderError("SECRET_NOT_FOUND", `${what}: not a Secret Manager secret id (1-255 of A-Z a-z 0-9 _ -) or projects/<project>/secrets/<id>`);
  }
  const path = `projects/${p}/secrets/${id}`;
  if (ref.version === undefined || ref.version === "latest") return { path };
  if (!/^[1-9][0-9]{0,18}$/.test(ref.version)) throw new ProviderError("CONFIG_INVALID", `${what}: version must be a positive number or latest`);
  return { path, version: Number(ref.version) };
}

/** The number at the end of a version's resource name, or undefined. */
export function versionNumber(name: unknown): number | undefined {
  if (typeof name !== "string") return undefined;
  const m = VERSION_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** A version's fingerprint: its number and creation time (a deleted and re-created secret restarts at 1). */
export function versionFingerprint(version: number, createTime: unknown): string {
  return typeof createTime === "string" && createTime.length <= 64 ? `v${version}@${createTime}` : `v${version}`;
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli), as Secret Manager's dataCrc32c. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC32C_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The payload of an `:access` reply as a value; `what` names the secret for errors. */
export function payloadValue(reply: Record<string, unknown>, what: string): SecretValue {
  const payload = reply.payload as { data?: unknown; dataCrc32c?: unknown } | undefined;
  const data = payload?.data ?? "";
  if (typeof data !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) {
    throw new ProviderError("PROVIDER_UNAVAILABLE", `${what}: Secret Manager's reply has no base64 payload.data`);
  }
  const bytes = Buffer.from(data, "base64");
  if (payload?.dataCrc32c !== undefined && String(payload.dataCrc32c) !== String(crc32c(bytes))) {
    bytes.fill(0);
    throw new ProviderError("PROVIDER_UNAVAILABLE", `${what}: the payload does not match its dataCrc32c (corrupted in transit)`);
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    // Not UTF-8: binary, delivered byte for byte in an array of its own (the host sends and drops it).
    const copy = new Uint8Array(bytes);
    bytes.fill(0);
    return { data: { value: copy }, encoding: "utf8" };
  }
  bytes.fill(0);
  return { data: jsonObjectKeys(text) ?? { value: text }, encoding: "utf8" };
}
