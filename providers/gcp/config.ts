/**
 * The gcp provider's settings, parsed once from `configure` params. Auth is a service-account
 * JSON key (auth.params.key_file or GOOGLE_APPLICATION_CREDENTIALS, read by this process) or the
 * Compute Engine metadata server (GCE_METADATA_HOST overrides its address). `default` takes the
 * key when one is named, else the metadata server. Workload identity federation (an
 * `external_account` file) is refused by name: not supported yet. Every problem is a
 * CONFIG_INVALID naming the dso.yaml field; messages never echo key material.
 */
import { readFileSync } from "node:fs";
import { assertProviderBlock, parseBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import type { ConfigureParams } from "../types.ts";
import { GCP_DEFAULT_ENDPOINT, GCP_METADATA_READS_PER_MINUTE, PUBSUB_DEFAULT_ENDPOINT, gcpAuthParamsSchema, gcpConfigSchema, gcpDescriptor } from "./descriptor.ts";

export const GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token";
export const DEFAULT_METADATA_HOST = "metadata.google.internal";
/** A key file is a few KiB; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

export interface ServiceAccountKey {
  clientEmail: string;
  privateKey: string;
  privateKeyId?: string;
  tokenUri: string;
}

export type GcpAuth = { method: "service_account_key"; key: ServiceAccountKey; keyPath: string } | { method: "metadata"; metadataHost: string };

export interface GcpSettings {
  /** Instance name from dso.yaml, for messages. */
  name: string;
  project: string;
  endpoint: string;
  pubsubEndpoint: string;
  quotaPerMinute: number;
  auth: GcpAuth;
}

function invalid(field: string, problem: string): ProviderError {
  return new ProviderError("CONFIG_INVALID", `${field}: ${problem}`);
}

function isHttpUrl(raw: string, loopbackOnlyHttp: boolean): boolean {
  try {
    const url = new URL(raw);
    if (url.protocol === "https:") return true;
    return url.protocol === "http:" && (!loopbackOnlyHttp || ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname));
  } catch {
    return false;
  }
}

/** Parses a key file's JSON; `field` names where its path came from. */
export function parseServiceAccountKey(text: string, field: string): ServiceAccountKey {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw invalid(field, "the credentials file is not JSON");
  }
  if (json?.type === "external_account") {
    throw invalid(field, "workload identity federation (an external_account file) is not supported yet; use a service-account key or the metadata server");
  }
  if (json?.type !== "service_account") throw invalid(field, `the credentials file is not a service-account key (type must be "service_account")`);
  const { client_email: clientEmail, private_key: privateKey, private_key_id: privateKeyId, token_uri: tokenUri } = json;
  if (typeof clientEmail !== "string" || !clientEmail) throw invalid(field, "the key has no client_email");
  if (typeof privateKey !== "string" || !privateKey.includes("PRIVATE KEY-----")) throw invalid(field, "the key has no PEM private_key");
  const uri = typeof tokenUri === "string" && tokenUri ? tokenUri : GOOGLE_TOKEN_URI;
  // The assertion is a bearer credential: never send it in clear beyond this host.
  if (!isHttpUrl(uri, true)) throw invalid(field, "the key's token_uri must be an https:// URL");
  return { clientEmail, privateKey, tokenUri: uri, ...(typeof privateKeyId === "string" && privateKeyId ? { privateKeyId } : {}) };
}

function readKeyFile(path: string, field: string): ServiceAccountKey {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw invalid(field, `cannot read the credentials file ${path}`);
  }
  if (text.length > MAX_KEY_FILE_BYTES) throw invalid(field, `${path} is too large for a credentials file`);
  return parseServiceAccountKey(text, field);
}

function metadataHost(env: Record<string, string | undefined>): string {
  const host = env.GCE_METADATA_HOST?.trim() || DEFAULT_METADATA_HOST;
  if (!/^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?$/.test(host)) throw invalid("GCE_METADATA_HOST", "must be a host or host:port");
  return host;
}

function parseAuth(params: ConfigureParams, env: Record<string, string | undefined>): GcpAuth {
  const prefix = `providers.${params.name}.auth`;
  const method = params.auth?.method ?? "default";
  const authParams = parseBlock(gcpAuthParamsSchema, `${prefix}.params`, params.auth?.params ?? {});
  const keyPath = authParams.key_file ?? env.GOOGLE_APPLICATION_CREDENTIALS?.trim() ?? "";
  const keyField = authParams.key_file ? `${prefix}.params.key_file` : "GOOGLE_APPLICATION_CREDENTIALS";
  if (method === "metadata") {
    if (authParams.key_file) throw invalid(`${prefix}.params.key_file`, "not used by the metadata method");
    return { method, metadataHost: metadataHost(env) };
  }
  if (method === "service_account_key" && !keyPath) {
    throw invalid(`${prefix}.params.key_file`, "service_account_key needs a key file (auth.params.key_file or GOOGLE_APPLICATION_CREDENTIALS)");
  }
  if (method !== "service_account_key" && method !== "default") {
    throw invalid(`${prefix}.method`, `"${method.slice(0, 40)}" is not one of default, service_account_key, metadata (external_account is not supported yet)`);
  }
  if (!keyPath) return { method: "metadata", metadataHost: metadataHost(env) };
  return { method: "service_account_key", key: readKeyFile(keyPath, keyField), keyPath };
}

export function parseGcpSettings(params: ConfigureParams, env: Record<string, string | undefined>): GcpSettings {
  assertProviderBlock(gcpDescriptor, params.name, { config: params.config, ...(params.auth ? { auth: params.auth } : {}) });
  const config = parseBlock(gcpConfigSchema, `providers.${params.name}.config`, params.config);
  return {
    name: params.name,
    project: config.project,
    endpoint: config.endpoint ?? GCP_DEFAULT_ENDPOINT,
    pubsubEndpoint: config.pubsub_endpoint ?? PUBSUB_DEFAULT_ENDPOINT,
    quotaPerMinute: config.quota_per_minute ?? GCP_METADATA_READS_PER_MINUTE,
    auth: parseAuth(params, env),
  };
}
