/**
 * The gcp provider's settings, parsed once from `configure` params. Auth is a service-account
 * JSON key (auth.params.key_file or GOOGLE_APPLICATION_CREDENTIALS, read by this process) or the
 * Compute Engine metadata server (GCE_METADATA_HOST overrides its address), or workload identity
 * federation (an `external_account` file named the same way: external-account.ts). `default`
 * takes the file when one is named (its `type` decides), else the metadata server. Every problem
 * is a CONFIG_INVALID naming the dso.yaml field; messages never echo key material.
 */
import { assertProviderBlock, parseBlock } from "../block-check.ts";
import { readSmallFile, SmallFileError } from "../bounded-read.ts";
import { ProviderError } from "../errors.ts";
import { parseExternalAccount, type ExternalAccount } from "./external-account.ts";
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

export type GcpAuth =
  | { method: "service_account_key"; key: ServiceAccountKey; keyPath: string }
  | { method: "metadata"; metadataHost: string }
  | { method: "external_account"; account: ExternalAccount; keyPath: string };

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

type Credentials = { type: "service_account"; key: ServiceAccountKey } | { type: "external_account"; account: ExternalAccount };

function parseJson(text: string, field: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid(field, "the credentials file is not JSON");
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw invalid(field, "the credentials file is not a JSON object");
  return json as Record<string, unknown>;
}

/** A credentials file: a service-account key or an external_account (federation) file. */
export function parseCredentialsFile(text: string, field: string): Credentials {
  const json = parseJson(text, field);
  if (json.type === "external_account") {
    return { type: "external_account", account: parseExternalAccount(json, (key, problem) => invalid(field, `external_account ${key}: ${problem}`)) };
  }
  return { type: "service_account", key: parseServiceAccountKey(text, field) };
}

/** Parses a key file's JSON; `field` names where its path came from. */
export function parseServiceAccountKey(text: string, field: string): ServiceAccountKey {
  const json = parseJson(text, field);
  if (json.type !== "service_account") throw invalid(field, `the credentials file is not a service-account key (type must be "service_account")`);
  const { client_email: clientEmail, private_key: privateKey, private_key_id: privateKeyId, token_uri: tokenUri } = json;
  if (typeof clientEmail !== "string" || !clientEmail) throw invalid(field, "the key has no client_email");
  if (typeof privateKey !== "string" || !privateKey.includes("PRIVATE KEY-----")) throw invalid(field, "the key has no PEM private_key");
  const uri = typeof tokenUri === "string" && tokenUri ? tokenUri : GOOGLE_TOKEN_URI;
  // The assertion is a bearer credential: never send it in clear beyond this host.
  if (!isHttpUrl(uri, true)) throw invalid(field, "the key's token_uri must be an https:// URL");
  return { clientEmail, privateKey, tokenUri: uri, ...(typeof privateKeyId === "string" && privateKeyId ? { privateKeyId } : {}) };
}

function readCredentialsFile(path: string, field: string): Credentials {
  let text: string;
  try {
    text = readSmallFile(path, MAX_KEY_FILE_BYTES);
  } catch (error) {
    throw invalid(field, error instanceof SmallFileError && error.message !== "cannot be read" ? `the credentials file ${path} ${error.message}` : `cannot read the credentials file ${path}`);
  }
  return parseCredentialsFile(text, field);
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
  if (method !== "service_account_key" && method !== "external_account" && method !== "default") {
    throw invalid(`${prefix}.method`, `"${method.slice(0, 40)}" is not one of default, service_account_key, external_account, metadata`);
  }
  if (method !== "default" && !keyPath) {
    throw invalid(`${prefix}.params.key_file`, `${method} needs a credentials file (auth.params.key_file or GOOGLE_APPLICATION_CREDENTIALS)`);
  }
  if (!keyPath) return { method: "metadata", metadataHost: metadataHost(env) };
  const file = readCredentialsFile(keyPath, keyField);
  if (method !== "default" && file.type !== method.replace("_key", "")) {
    throw invalid(keyField, `auth.method ${method} needs ${method === "external_account" ? 'an external_account file (type "external_account")' : 'a service-account key (type "service_account")'}`);
  }
  return file.type === "service_account" ? { method: "service_account_key", key: file.key, keyPath } : { method: "external_account", account: file.account, keyPath };
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
