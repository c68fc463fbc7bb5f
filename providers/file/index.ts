/**
 * The built-in `file` provider, compatible with the Go DSO's file backend: `config.path` (default
 * /etc/dso/secrets) is a directory holding one file per secret, `<name>` or `<name>.json`; or one
 * YAML/JSON file mapping names to a string or an object. Fingerprints are SHA-256 hashes made in
 * this process, so only the hash crosses to the agent during polling.
 */
import { createHash } from "node:crypto";
import { readFile, realpath, stat } from "node:fs/promises";
import { isAbsolute, join, sep } from "node:path";
import { assertProviderBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import type { ConfigureParams, FetchItem, FingerprintItem, ProviderClient, ProviderFactory, SecretRef } from "../types.ts";
import { toRpcError } from "../errors.ts";
import { fileDescriptor } from "./descriptor.ts";

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
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ProviderError("CONFIG_INVALID", `${what}: expected a string or an object of keys`);
  }
  const entries = Object.entries(parsed as Record<string, unknown>);
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

function sha256(text: string | Uint8Array): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

function noVersions(ref: SecretRef): void {
  if (ref.version || ref.stage) {
    throw new ProviderError("SECRET_NOT_FOUND", `secret "${ref.name}": the file provider has no versions to pin`);
  }
}

interface Source {
  /** Raw content (hashed for the fingerprint), parsed keys and their encoding for one secret. */
  read(name: string): Promise<{ raw: string | Uint8Array; entries: Entries; encoding?: "utf8" | "base64" }>;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A secret file's keys. Text (valid UTF-8) is read as before; any other file is delivered as the
 * bytes it holds (base64 on the wire): reading it as UTF-8 replaced each invalid byte with
 * U+FFFD, so a binary secret arrived changed and larger (found by test/fuzz/values).
 */
function fileContent(bytes: Uint8Array, what: string): { raw: string | Uint8Array; entries: Entries; encoding: "utf8" | "base64" } {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return { raw: bytes, entries: { value: Buffer.from(bytes).toString("base64") }, encoding: "base64" };
  }
  return { raw: text, entries: parseSecretContent(text, what), encoding: "utf8" };
}

function directorySource(base: string): Source {
  return {
    async read(name) {
      checkName(name);
      const realBase = await realpath(base).catch(() => {
        throw new ProviderError("PROVIDER_UNAVAILABLE", `secrets directory ${base} does not exist`);
      });
      for (const candidate of [name, `${name}.json`]) {
        const path = join(realBase, candidate);
        const real = await realpath(path).catch(() => undefined);
        if (!real) continue;
        if (real !== realBase && !real.startsWith(realBase + sep)) {
          throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" resolves outside ${base}; refusing`);
        }
        const info = await stat(real);
        if (!info.isFile()) continue;
        if (info.size > MAX_SECRET_BYTES) throw new ProviderError("CONFIG_INVALID", `secret "${name}" is larger than 1 MiB`);
        return fileContent(await readFile(real), `secret "${name}"`);
      }
      throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" not found in ${base}`);
    },
  };
}

function singleFileSource(file: string): Source {
  return {
    async read(name) {
      const text = await readFile(file, "utf8").catch(() => {
        throw new ProviderError("PROVIDER_UNAVAILABLE", `secrets file ${file} cannot be read`);
      });
      let doc: unknown;
      try {
        doc = file.endsWith(".json") ? JSON.parse(text) : Bun.YAML.parse(text);
      } catch {
        throw new ProviderError("CONFIG_INVALID", `secrets file ${file} is not valid ${file.endsWith(".json") ? "JSON" : "YAML"}`);
      }
      if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
        throw new ProviderError("CONFIG_INVALID", `secrets file ${file} must map secret names to values`);
      }
      const entry = (doc as Record<string, unknown>)[name];
      if (entry === undefined) throw new ProviderError("SECRET_NOT_FOUND", `secret "${name}" not found in ${file}`);
      if (typeof entry === "string") return { raw: entry, entries: { value: entry } };
      const entries = objectEntries(entry, `secret "${name}"`);
      return { raw: JSON.stringify(entries), entries };
    },
  };
}

async function openSource(path: string): Promise<Source> {
  const info = await stat(path).catch(() => undefined);
  if (info?.isFile()) return singleFileSource(path);
  // A directory, or one that does not exist yet: secrets may be added later.
  return directorySource(path);
}

export const fileProvider: ProviderFactory = {
  type: "file",
  async create(params: ConfigureParams): Promise<ProviderClient> {
    assertProviderBlock(fileDescriptor, params.name, params);
    const path = params.config.path ?? DEFAULT_FILE_PROVIDER_PATH;
    if (!isAbsolute(path)) {
      throw new ProviderError("CONFIG_INVALID", `providers.${params.name}.config.path: must be an absolute path`);
    }
    const source = () => openSource(path);

    async function each<T>(refs: SecretRef[], one: (ref: SecretRef, s: Source) => Promise<T>, fail: (ref: SecretRef, e: unknown) => T) {
      const s = await source();
      return Promise.all(refs.map((ref) => one(ref, s).catch((e) => fail(ref, e))));
    }

    return {
      fingerprint: (refs) =>
        each<FingerprintItem>(
          refs,
          async (ref, s) => {
            noVersions(ref);
            return { ref, fingerprint: sha256((await s.read(ref.name)).raw) };
          },
          (ref, e) => ({ ref, error: toRpcError(e, params.name) }),
        ),
      fetch: (refs) =>
        each<FetchItem>(
          refs,
          async (ref, s) => {
            noVersions(ref);
            const { raw, entries, encoding = "utf8" } = await s.read(ref.name);
            const fingerprint = sha256(raw);
            // No version: the only one a file has would be its hash, and that must not be shown.
            return { ref, fingerprint, value: { data: entries, encoding } };
          },
          (ref, e) => ({ ref, error: toRpcError(e, params.name) }),
        ),
      async health() {
        const info = await stat(path).catch(() => undefined);
        return info ? { ok: true } : { ok: false, message: `${path} does not exist` };
      },
      async close() {},
    };
  },
};
