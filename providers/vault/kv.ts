/**
 * Reading KV secrets. KV v2 fingerprints come from the metadata endpoint only (a policy with
 * `read` on <mount>/metadata/* suffices, no data access); KV v1 has no metadata, so the value is
 * read here and only a keyed MAC of it (providers/value-fingerprint.ts) leaves the process. A
 * KV v1 poll keeps the response as bytes: the MAC is made over the canonical JSON of its `data`
 * written byte by byte (providers/json-bytes.ts), and both buffers are zeroed; JSON.parse would
 * leave each value as a string in the long-lived process (issue 18). Only a fetch (its own
 * short-lived process) parses the values.
 */
import type NodeVault from "node-vault";
import { ProviderError } from "../errors.ts";
import type { ValueFingerprint } from "../value-fingerprint.ts";
import type { SecretValue } from "../../src/rpc/protocol.ts";
import type { SecretRef } from "../types.ts";
import type { VaultSettings } from "./config.ts";
import { toVaultError } from "./errors.ts";
import { isMapping } from "../../src/util/is-mapping.ts";
import { canonicalBytes, isEmptyObject, JsonBytesError, kindAt, memberOf, type ByteRange } from "../json-bytes.ts";

export interface SecretPath {
  /** Path under the mount, each segment URL-encoded. */
  path: string;
  /** A pinned KV v2 version. */
  version?: number;
}

export interface ReadResult {
  fingerprint: string;
  version?: string;
  value: SecretValue;
}

const utf8 = new TextDecoder();
const printable = (s: string) => s.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);

/**
 * `path/to/secret` under the mount, optionally `path?version=N` as in the Go DSO; ref.version
 * wins over the suffix. Vault has versions but no stages.
 */
export function parseSecretPath(ref: SecretRef, kvVersion: 1 | 2): SecretPath {
  const what = `secret "${printable(ref.name)}"`;
  const [rawPath = "", query] = ref.name.split("?", 2) as [string, string | undefined];
  const segments = rawPath.replace(/^\/+|\/+$/g, "").split("/");
  if (segments.some((seg) => seg === "" || seg === "." || seg === ".." || seg.includes("\0"))) {
    throw new ProviderError("SECRET_NOT_FOUND", `${what}: not a plain path under the mount`);
  }
  const params = new URLSearchParams(query ?? "");
  for (const key of params.keys()) {
    if (key !== "version") throw new ProviderError("CONFIG_INVALID", `${what}: unknown parameter "${printable(key)}" (only ?version=N)`);
  }
  if (ref.stage) throw new ProviderError("CONFIG_INVALID", `${what}: Vault has versions, not stages`);
  const rawVersion = ref.version ?? params.get("version") ?? undefined;
  const path = segments.map(encodeURIComponent).join("/");
  if (rawVersion === undefined) return { path };
  if (!/^[1-9]\d{0,9}$/.test(rawVersion)) throw new ProviderError("CONFIG_INVALID", `${what}: version must be a positive integer`);
  if (kvVersion === 1) throw new ProviderError("CONFIG_INVALID", `${what}: a KV v1 mount has no versions to pin`);
  return { path, version: Number(rawVersion) };
}

/** Vault KV values are JSON: strings stay as they are, anything else is JSON-encoded. */
export function toSecretValue(data: unknown, what: string): SecretValue {
  if (!isMapping(data)) {
    throw new ProviderError("PROVIDER_UNAVAILABLE", `${what}: Vault returned no key/value map`);
  }
  const entries = Object.entries(data);
  if (entries.length === 0) throw new ProviderError("CONFIG_INVALID", `${what}: the secret has no keys to deliver`);
  return {
    data: Object.fromEntries(entries.map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])),
    encoding: "utf8",
  };
}

/** JSON with object keys sorted at every level, so equal maps get equal fingerprints whatever their order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

interface VersionMeta {
  created_time?: string;
  deletion_time?: string;
  destroyed?: boolean;
}

const alive = (meta: VersionMeta | undefined): meta is VersionMeta => !!meta && !meta.destroyed && !meta.deletion_time;

/**
 * Fingerprint of a KV v2 version, the same whether it came from metadata or a data read: the
 * version number, plus (unpinned) its creation time, so a secret deleted and re-created at the
 * same version number still changes. Metadata's updated_time is not used: it also moves on
 * metadata-only edits (custom_metadata, max_versions), which would refetch unchanged values.
 */
function versionFingerprint(version: number, createdTime: string | undefined, pinned: boolean): string {
  return pinned || !createdTime ? `v${version}` : `v${version}@${createdTime}`;
}

export class KvReader {
  constructor(
    private readonly client: NodeVault.client,
    private readonly settings: VaultSettings,
    /** KV v1 only: the keyed MAC its fingerprints are made with. */
    private readonly macOfValue?: ValueFingerprint,
  ) {}

  async fingerprint(ref: SecretRef, signal: AbortSignal): Promise<string> {
    const target = parseSecretPath(ref, this.settings.kvVersion);
    if (this.settings.kvVersion === 1) {
      const body = await this.readV1Body(ref, target, signal);
      try {
        return this.fingerprintV1(body, ref);
      } finally {
        body.fill(0);
      }
    }
    return this.fingerprintV2(ref, target, signal);
  }

  private async fingerprintV2(ref: SecretRef, target: SecretPath, signal: AbortSignal): Promise<string> {
    const what = this.describe(ref);
    const meta = await this.get(`${this.settings.mount}/metadata/${target.path}`, signal, `metadata of ${what}`);
    const versions = (meta?.versions ?? {}) as Record<string, VersionMeta>;
    const number = target.version ?? Number(meta?.current_version ?? 0);
    const version = versions[String(number)];
    if (!number || !alive(version)) {
      const which = target.version ? `version ${number}` : "its current version";
      throw new ProviderError("SECRET_NOT_FOUND", `${this.settings.label}: ${what}: ${which} does not exist or is deleted`);
    }
    return versionFingerprint(number, version.created_time, target.version !== undefined);
  }

  async read(ref: SecretRef, signal: AbortSignal): Promise<ReadResult> {
    const target = parseSecretPath(ref, this.settings.kvVersion);
    if (this.settings.kvVersion === 1) return this.readV1(ref, target, signal);
    const what = this.describe(ref);
    const query = target.version ? `?version=${target.version}` : "";
    const body = await this.get(`${this.settings.mount}/data/${target.path}${query}`, signal, what);
    const metadata = (body?.metadata ?? {}) as VersionMeta & { version?: number };
    if (!body?.data || !metadata.version) {
      throw new ProviderError("SECRET_NOT_FOUND", `${this.settings.label}: ${what} is deleted`);
    }
    return {
      fingerprint: versionFingerprint(metadata.version, metadata.created_time, target.version !== undefined),
      version: String(metadata.version),
      value: toSecretValue(body.data, `${this.settings.label}: ${what}`),
    };
  }

  /** KV v1 has no versions; its fingerprint is a MAC of the value's canonical JSON and is never shown. */
  private fingerprintV1(body: Uint8Array, ref: SecretRef): string {
    if (!this.macOfValue) throw new ProviderError("INTERNAL", `${this.settings.label}: KV v1 reader without a fingerprint key`);
    const what = `${this.settings.label}: ${this.describe(ref)}`;
    let data: ByteRange | undefined;
    try {
      data = memberOf(body, "data");
    } catch (error) {
      if (!(error instanceof JsonBytesError)) throw error;
    }
    if (!data || kindAt(body, data) !== "object") throw new ProviderError("PROVIDER_UNAVAILABLE", `${what}: Vault returned no key/value map`);
    if (isEmptyObject(body, data)) throw new ProviderError("CONFIG_INVALID", `${what}: the secret has no keys to deliver`);
    const canonical = canonicalBytes(body, data);
    try {
      return this.macOfValue(canonical);
    } finally {
      new Uint8Array(canonical.buffer).fill(0);
    }
  }

  private async readV1(ref: SecretRef, target: SecretPath, signal: AbortSignal): Promise<ReadResult> {
    const body = await this.readV1Body(ref, target, signal);
    try {
      const fingerprint = this.fingerprintV1(body, ref);
      // This is a fetch (a short-lived process): the values may become strings here.
      const data = (JSON.parse(utf8.decode(body)) as { data?: unknown }).data;
      return { fingerprint, value: toSecretValue(data, `${this.settings.label}: ${this.describe(ref)}`) };
    } finally {
      body.fill(0);
    }
  }

  /** The whole KV v1 response as bytes the caller zeroes. */
  private async readV1Body(ref: SecretRef, target: SecretPath, signal: AbortSignal): Promise<Uint8Array> {
    const what = this.describe(ref);
    let body: unknown;
    try {
      body = await this.client.read(`${this.settings.mount}/${target.path}`, { signal, rawBody: true });
    } catch (error) {
      throw toVaultError(error, this.settings.label, what);
    }
    if (!(body instanceof Uint8Array)) throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.settings.label}: ${what}: Vault returned no key/value map`);
    return body;
  }

  private describe(ref: SecretRef): string {
    return `secret "${printable(ref.name)}" in ${this.settings.mount}/`;
  }

  /** The `data` member of a Vault response. */
  private async get(path: string, signal: AbortSignal, what: string): Promise<Record<string, any> | undefined> {
    try {
      const response = await this.client.read(path, { signal });
      // Vault answers not-found with 404; a 200 that is not its JSON must not read as "deleted".
      if (!response || typeof response !== "object") throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.settings.label}: ${what}: the reply is not Vault's JSON`);
      return response.data ?? undefined;
    } catch (error) {
      throw toVaultError(error, this.settings.label, what);
    }
  }
}
