/**
 * The built-in `file` provider, compatible with the Go DSO's file backend: `config.path` (default
 * /etc/dso/secrets) is a directory holding one file per secret, `<name>` or `<name>.json`; or one
 * YAML/JSON file mapping names to a string or an object. Fingerprints are keyed MACs of the content
 * (providers/value-fingerprint.ts) made in this process, so only the MAC crosses to the agent
 * during polling. A poll is metadata-first: it stats each file and reads (and MACs) it only when
 * its size, mtime, ctime, inode or device changed since the last look. A poll never makes a string
 * of a value (issue 18): a file is read with read(2) into an array on its own ArrayBuffer (a
 * runtime read buffer is copied and left behind unzeroed), MACed as bytes and zeroed; an entry of
 * a JSON document is found and put in canonical form byte by byte (providers/json-bytes.ts). Only
 * a fetch (a short-lived process) parses values, and a YAML document, which has no byte reader
 * here. See docs/providers/file.md for what metadata cannot see.
 */
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, join, sep } from "node:path";
import { assertProviderBlock, parseBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import type { ConfigureParams, FetchItem, FingerprintItem, ProviderClient, ProviderFactory, SecretRef } from "../types.ts";
import { toRpcError } from "../errors.ts";
import { valueFingerprinter, type ValueFingerprint } from "../value-fingerprint.ts";
import { fileConfigSchema, fileDescriptor } from "./descriptor.ts";
import { isMapping } from "../../src/util/is-mapping.ts";
import { canonicalBytes, isEmptyObject, JsonBytesError, kindAt, memberOf, type ByteRange } from "../json-bytes.ts";

export const DEFAULT_FILE_PROVIDER_PATH = "/etc/dso/secrets";
/** Same cap as AWS Secrets Manager: a secret file larger than this is a mistake, not a secret. */
const MAX_SECRET_BYTES = 1024 * 1024;

type Entries = Record<string, string>;

/** A secret's content as keys: a JSON object gives its keys, anything else is the single key `value`. */
export function parseSecretContent(content: string, what: string): Entries {
  const trimmed = content.trim();
  if (trimmed.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      return { value: content };
    }
    return objectEntries(parsed, what);
  }
  return { value: content };
}

function objectEntries(parsed: unknown, what: string): Entries {
  if (!isMapping(parsed)) {
    throw new ProviderError("CONFIG_INVALID", `${what}: expected a string or an object of keys`);
  }
  const entries = Object.entries(parsed);
  if (entries.length === 0) throw new ProviderError("CONFIG_INVALID", `${what}: empty object has no keys to deliver`);
  return Object.fromEntries(entries.map(([k, val]) => [k, typeof val === "string" ? val : JSON.stringify(val)]));
}

function checkName(name: string): void {
  const bad =
    name.includes("\0") ||
    isAbsolute(name) ||
    name.split(/[\\/]/).some((part) => part === ".." || part === "." || part === "");
  if (bad) throw new ProviderError("SECRET_NOT_FOUND", `secret name "${name.replace(/[^\x20-\x7e]/g, "?")}" is not a plain relative name`);
}

/** The file system calls this provider makes; tests wrap the real ones to count reads. */
export interface FileSystemCalls {
  realpath(path: string): Promise<string>;
  stat(path: string): Promise<BigIntStats>;
  readFile(path: string): Promise<Uint8Array>;
  /** Wall clock in ms (the racy-stamp rule below). */
  now(): number;
}

/**
 * A whole file, read with read(2) straight into arrays on their own ArrayBuffers; an array
 * outgrown (the file grew while read) is zeroed before it is dropped. fs.readFile hands back a
 * small file's bytes in the garbage collector's storage, which JSC copies out (and leaves behind,
 * unzeroed) the first time a view of its buffer is taken, as hashing does: measured, one stray
 * copy of a JSON secret's text per read in the long-lived process.
 */
export function readOwnedFile(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    // One byte more than the size: a read that fills it means the file grew (callers check sizes).
    let bytes = new Uint8Array(new ArrayBuffer(Number(fstatSync(fd).size) + 1));
    let length = 0;
    for (;;) {
      const got = readSync(fd, bytes, length, bytes.length - length, null);
      if (got === 0) return bytes.subarray(0, length);
      length += got;
      if (length < bytes.length) continue;
      const bigger = new Uint8Array(new ArrayBuffer(bytes.length * 2));
      bigger.set(bytes);
      bytes.fill(0);
      bytes = bigger;
    }
  } finally {
    closeSync(fd);
  }
}

export const nodeFileSystem: FileSystemCalls = {
  realpath: (path) => realpath(path),
  stat: (path) => stat(path, { bigint: true }),
  readFile: async (path) => readOwnedFile(path),
  now: () => Date.now(),
};

/**
 * File times come from a coarse clock (a timer tick; a second or two on some filesystems), so a
 * same-size rewrite in the same tick as the write we read could leave every field of the stamp as
 * it was. A stamp whose ctime is this close to the moment we looked is not trusted at the next
 * poll: the file is read again (git's "racy index" rule).
 */
const RACY_WINDOW_NS = 2_000_000_000n;

/** What moves when a file's content can have changed: a write moves mtime and ctime, a replace the inode. */
function stampOf(info: BigIntStats): string {
  return `${info.size}:${info.mtimeNs}:${info.ctimeNs}:${info.ino}:${info.dev}`;
}

interface Seen {
  path: string;
  stamp: string;
  fingerprint: string;
  /** False while the stamp is racy: the next poll reads the file again. */
  trusted: boolean;
}

/** secret name → the stamp and fingerprint of its file when last read, for this provider instance. */
class SeenFiles {
  private readonly seen = new Map<string, Seen>();

  /** The known fingerprint when the file still has the stamp it had when read, else undefined. */
  lookup(name: string, path: string, info: BigIntStats): string | undefined {
    const entry = this.seen.get(name);
    return entry?.trusted && entry.path === path && entry.stamp === stampOf(info) ? entry.fingerprint : undefined;
  }

  /** `info` must come from a stat made before the read that gave `fingerprint`, and `lookedAtNs` from before that stat. */
  remember(name: string, path: string, info: BigIntStats, lookedAtNs: bigint, fingerprint: string): void {
    this.seen.set(name, { path, stamp: stampOf(info), fingerprint, trusted: lookedAtNs - info.ctimeNs >= RACY_WINDOW_NS });
  }

  forget(name: string): void {
    this.seen.delete(name);
  }
}

function noVersions(ref: SecretRef): void {
  if (ref.version || ref.stage) {
    throw new ProviderError("SECRET_NOT_FOUND", `secret "${ref.name}": the file provider has no versions to pin`);
  }
}

const utf8 = new TextDecoder();

/** MAC, then zero the bytes. */
function macAndZero(mac: ValueFingerprint, bytes: Uint8Array): string {
  try {
    return mac(bytes);
  } finally {
    bytes.fill(0);
  }
}

interface Source {
  /** A secret's fingerprint; its content is read only when its file's stamp changed. */
  fingerprint(name: string): Promise<string>;
  /** A secret's keys and fingerprint, read now. */
  read(name: string): Promise<{ fingerprint: string; entries: Record<string, string | Uint8Array> }>;
  /** The call is over: zero what it read. */
  close(): void;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A secret file's keys. Text (valid UTF-8) is parsed as before (and its bytes zeroed); any other
 * file is delivered as the bytes it holds: reading it as UTF-8 replaced each invalid byte with
 * U+FFFD, so a binary secret arrived changed and larger (found by test/fuzz/values).
 */
function fileContent(bytes: Uint8Array, what: string): Record<string, string | Uint8Array> {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return { value: bytes };
  }
  bytes.fill(0);
  return parseSecretContent(text, what);
}

interface Tools {
  fs: FileSystemCalls;
  mac: ValueFingerprint;
  seen: SeenFiles;
  /** When this call started looking (ns), taken before any stat of it. */
  lookedAtNs: bigint;
}

function directorySource(base: string, { fs, mac, seen, lookedAtNs }: Tools): Source {
  let realBase: Promise<string> | undefined;
  const resolveBase = () =>
    (realBase ??= fs.realpath(base).catch(() => {
      throw new ProviderError("PROVIDER_UNAVAILABLE", `secrets directory ${base} does not exist`);
    }));

  async function locate(name: string): Promise<{ real: string; info: BigIntStats }> {
    checkName(name);
    const root = await resolveBase();
    for (const candidate of [name, `${name}.json`]) {
      const real = await fs.realpath(join(root, candidate)).catch(() => undefined);
      if (!real) continue;
      if (real !== root && !real.startsWith(root + sep)) {
        throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" resolves outside ${base}; refusing`);
      }
      const info = await fs.stat(real);
      if (!info.isFile()) continue;
      if (info.size > MAX_SECRET_BYTES) throw new ProviderError("CONFIG_INVALID", `secret "${name}" is larger than 1 MiB`);
      return { real, info };
    }
    throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" not found in ${base}`);
  }

  async function readBytes(name: string, real: string): Promise<Uint8Array> {
    const bytes = await fs.readFile(real);
    if (bytes.byteLength > MAX_SECRET_BYTES) {
      bytes.fill(0);
      throw new ProviderError("CONFIG_INVALID", `secret "${name}" is larger than 1 MiB`);
    }
    return bytes;
  }

  /** Stat first, read second: a write in between gives a newer stamp next time, never a stale fingerprint. */
  async function located<T>(name: string, body: (found: { real: string; info: BigIntStats }) => Promise<T>): Promise<T> {
    try {
      return await body(await locate(name));
    } catch (error) {
      seen.forget(name);
      throw error;
    }
  }

  return {
    fingerprint: (name) =>
      located(name, async ({ real, info }) => {
        const known = seen.lookup(name, real, info);
        if (known) return known;
        const fingerprint = macAndZero(mac, await readBytes(name, real));
        seen.remember(name, real, info, lookedAtNs, fingerprint);
        return fingerprint;
      }),
    read: (name) =>
      located(name, async ({ real, info }) => {
        const bytes = await readBytes(name, real);
        const fingerprint = mac(bytes);
        seen.remember(name, real, info, lookedAtNs, fingerprint);
        return { fingerprint, entries: fileContent(bytes, `secret "${name}"`) };
      }),
    close() {},
  };
}

/** Where secret `name` sits in a JSON document, checked as parseDocument and objectEntries check the parsed one. */
function jsonEntry(bytes: Uint8Array, file: string, name: string): ByteRange {
  let range: ByteRange | undefined;
  try {
    range = memberOf(bytes, name);
  } catch (error) {
    if (!(error instanceof JsonBytesError)) throw error;
    throw new ProviderError("CONFIG_INVALID", error.notObject ? `secrets file ${file} must map secret names to values` : `secrets file ${file} is not valid JSON`);
  }
  if (!range) throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" not found in ${file}`);
  const kind = kindAt(bytes, range);
  if (kind !== "string" && kind !== "object") throw new ProviderError("CONFIG_INVALID", `secret "${name}": expected a string or an object of keys`);
  if (isEmptyObject(bytes, range)) throw new ProviderError("CONFIG_INVALID", `secret "${name}": empty object has no keys to deliver`);
  return range;
}

/**
 * One YAML or JSON file mapping names to secrets. A JSON document's fingerprints come from its
 * bytes (the MAC of the entry's canonical JSON), in polls and fetches alike; a YAML document is
 * parsed (the MAC of the entry's text, or of its keys as JSON).
 */
function singleFileSource(file: string, info: BigIntStats, { fs, mac, seen, lookedAtNs }: Tools): Source {
  const json = file.endsWith(".json");
  // One read (and at most one parse) per call, however many secrets it asks for; zeroed at close.
  let bytes: Promise<Uint8Array> | undefined;
  let doc: Promise<Record<string, unknown>> | undefined;
  const loadBytes = () =>
    (bytes ??= fs.readFile(file).catch(() => {
      throw new ProviderError("PROVIDER_UNAVAILABLE", `secrets file ${file} cannot be read`);
    }));
  const load = () => (doc ??= loadBytes().then((b) => parseDocument(file, b)));

  async function entryOf(name: string): Promise<{ raw: string; entries: Entries }> {
    const entry = (await load())[name];
    if (entry === undefined) throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" not found in ${file}`);
    if (typeof entry === "string") return { raw: entry, entries: { value: entry } };
    const entries = objectEntries(entry, `secret "${name}"`);
    return { raw: JSON.stringify(entries), entries };
  }

  async function fingerprintOf(name: string): Promise<string> {
    if (!json) return mac((await entryOf(name)).raw);
    const document = await loadBytes();
    const canonical = canonicalBytes(document, jsonEntry(document, file, name));
    try {
      return mac(canonical);
    } finally {
      new Uint8Array(canonical.buffer).fill(0);
    }
  }

  async function remembered<T>(name: string, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      seen.forget(name);
      throw error;
    }
  }

  return {
    fingerprint: (name) =>
      remembered(name, async () => {
        const known = seen.lookup(name, file, info);
        if (known) return known;
        const fingerprint = await fingerprintOf(name);
        seen.remember(name, file, info, lookedAtNs, fingerprint);
        return fingerprint;
      }),
    read: (name) =>
      remembered(name, async () => {
        const fingerprint = await fingerprintOf(name);
        const { entries } = await entryOf(name);
        seen.remember(name, file, info, lookedAtNs, fingerprint);
        return { fingerprint, entries };
      }),
    close() {
      void bytes?.then((b) => b.fill(0)).catch(() => {});
    },
  };
}

/** Parses a document's bytes (the caller zeroes them); its values become strings, so fetches and YAML only. */
function parseDocument(file: string, bytes: Uint8Array): Record<string, unknown> {
  const text = utf8.decode(bytes);
  let doc: unknown;
  try {
    doc = file.endsWith(".json") ? JSON.parse(text) : Bun.YAML.parse(text);
  } catch {
    throw new ProviderError("CONFIG_INVALID", `secrets file ${file} is not valid ${file.endsWith(".json") ? "JSON" : "YAML"}`);
  }
  if (!isMapping(doc)) {
    throw new ProviderError("CONFIG_INVALID", `secrets file ${file} must map secret names to values`);
  }
  return doc;
}

async function openSource(path: string, tools: Omit<Tools, "lookedAtNs">): Promise<Source> {
  const lookedAtNs = BigInt(Math.floor(tools.fs.now())) * 1_000_000n;
  const info = await tools.fs.stat(path).catch(() => undefined);
  if (info?.isFile()) return singleFileSource(path, info, { ...tools, lookedAtNs });
  // A directory, or one that does not exist yet: secrets may be added later.
  return directorySource(path, { ...tools, lookedAtNs });
}

/** The provider over some file system calls (the real ones by default; tests count them). */
export function createFileProvider(fs: FileSystemCalls = nodeFileSystem): ProviderFactory {
  return {
    type: "file",
    async create(params: ConfigureParams): Promise<ProviderClient> {
      assertProviderBlock(fileDescriptor, params.name, params);
      const path = parseBlock(fileConfigSchema, `providers.${params.name}.config`, params.config).path ?? DEFAULT_FILE_PROVIDER_PATH;
      // Loading dso.yaml made a relative path absolute (config/provider-rules.ts); one that still
      // is relative came from elsewhere and would depend on the agent's working directory.
      if (!isAbsolute(path)) throw new ProviderError("CONFIG_INVALID", `providers.${params.name}.config.path: must be an absolute path`);
      const tools = { fs, mac: valueFingerprinter(params), seen: new SeenFiles() };

      async function each<T>(refs: SecretRef[], one: (ref: SecretRef, s: Source) => Promise<T>, fail: (ref: SecretRef, e: unknown) => T) {
        const s = await openSource(path, tools);
        try {
          return await Promise.all(refs.map((ref) => one(ref, s).catch((e) => fail(ref, e))));
        } finally {
          s.close();
        }
      }

      return {
        fingerprint: (refs) =>
          each<FingerprintItem>(
            refs,
            async (ref, s) => {
              noVersions(ref);
              return { ref, fingerprint: await s.fingerprint(ref.name) };
            },
            (ref, e) => ({ ref, error: toRpcError(e, params.name) }),
          ),
        fetch: (refs) =>
          each<FetchItem>(
            refs,
            async (ref, s) => {
              noVersions(ref);
              const { fingerprint, entries } = await s.read(ref.name);
              // No version: the only one a file has would be its fingerprint, and that is not shown.
              return { ref, fingerprint, value: { data: entries, encoding: "utf8" } };
            },
            (ref, e) => ({ ref, error: toRpcError(e, params.name) }),
          ),
        async health() {
          const info = await fs.stat(path).catch(() => undefined);
          return info ? { ok: true } : { ok: false, message: `${path} does not exist` };
        },
        async close() {},
      };
    },
  };
}

export const fileProvider: ProviderFactory = createFileProvider();
