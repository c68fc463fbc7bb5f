/**
 * Parses a vault provider's `configure` params into settings, naming the offending field on any
 * problem. Compatible with the Go DSO (`config.address`, `config.token`, `config.mount`) and
 * extended with KV v1, namespaces, TLS settings and AppRole login.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { assertProviderBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import { vaultDescriptor } from "./descriptor.ts";
import type { ConfigureParams } from "../types.ts";

export const DEFAULT_VAULT_ADDRESS = "http://127.0.0.1:8200";
export const DEFAULT_KV_MOUNT = "secret";
export const DEFAULT_APPROLE_MOUNT = "approle";

const APPROLE_PARAM_KEYS = ["role_id", "secret_id", "mount"];

export type VaultAuth =
  | { method: "token"; token: string }
  | { method: "approle"; roleId: string; secretId?: string; mount: string };

export interface VaultSettings {
  /** The instance name, for messages: `vault provider "<name>"`. */
  label: string;
  address: string;
  mount: string;
  kvVersion: 1 | 2;
  namespace?: string;
  caPem?: string;
  skipTlsVerify: boolean;
  auth: VaultAuth;
}

function invalid(field: string, problem: string): ProviderError {
  return new ProviderError("CONFIG_INVALID", `${field}: ${problem}`);
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1";
  return false;
}

function parseAddress(raw: string, field: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid(field, "is not a URL (expected https://host:8200)");
  }
  if (url.username || url.password) throw invalid(field, "must not carry credentials in the URL");
  if (url.protocol !== "https:" && url.protocol !== "http:") throw invalid(field, `unsupported scheme ${url.protocol}`);
  // Plain http would send the token in clear; allow it only where it never leaves the host.
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    throw invalid(field, "plain http is allowed only for loopback addresses; use https");
  }
  if (url.search || url.hash) throw invalid(field, "must not have a query or fragment");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

function parseBoolean(raw: string, field: string): boolean {
  const value = raw.trim().toLowerCase();
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0" || value === "") return false;
  throw invalid(field, `expected "true" or "false", got "${raw.slice(0, 20)}"`);
}

function readCa(path: string, field: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch {
    throw invalid(field, `cannot read CA certificate file ${path}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw invalid(field, `${path} holds no PEM certificate`);
  return pem;
}

function cleanMount(raw: string, field: string): string {
  const mount = raw.replace(/^\/+|\/+$/g, "");
  if (!mount || mount.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) {
    throw invalid(field, "must be a mount path such as secret or team/kv");
  }
  return mount;
}

function parseAuth(params: ConfigureParams, config: Record<string, string>): VaultAuth {
  const prefix = `providers.${params.name}`;
  const method = params.auth?.method ?? "token";
  const authParams = params.auth?.params ?? {};
  const credentials = params.credentials ?? {};
  // The Go DSO accepted `env` for "credentials from the environment": for Vault that is VAULT_TOKEN.
  if (method === "token" || method === "env") {
    for (const key of Object.keys(authParams)) {
      throw invalid(`${prefix}.auth.params.${key}`, `unknown key for token auth (put the token in config.token or VAULT_TOKEN)`);
    }
    // Trimmed: a token read from a file often ends in a newline, which no HTTP header may carry.
    const token = (config.token || credentials.VAULT_TOKEN || "").trim();
    if (!token) throw invalid(`${prefix}.config.token`, "no Vault token: set config.token or VAULT_TOKEN in the agent's environment");
    return { method: "token", token };
  }
  if (method === "approle") {
    for (const key of Object.keys(authParams)) {
      if (!APPROLE_PARAM_KEYS.includes(key)) throw invalid(`${prefix}.auth.params.${key}`, "unknown key for approle auth");
    }
    const roleId = (authParams.role_id || credentials.VAULT_ROLE_ID || "").trim();
    if (!roleId) throw invalid(`${prefix}.auth.params.role_id`, "approle needs a role_id (or VAULT_ROLE_ID in the agent's environment)");
    const secretId = (authParams.secret_id || credentials.VAULT_SECRET_ID || "").trim();
    const mount = cleanMount(authParams.mount ?? DEFAULT_APPROLE_MOUNT, `${prefix}.auth.params.mount`);
    return { method: "approle", roleId, mount, ...(secretId ? { secretId } : {}) };
  }
  throw invalid(`${prefix}.auth.method`, `unsupported for vault: "${method}" (use token or approle)`);
}

export function parseVaultSettings(params: ConfigureParams, env: Record<string, string | undefined>): VaultSettings {
  const prefix = `providers.${params.name}`;
  const config = params.config;
  assertProviderBlock(vaultDescriptor, params.name, { config });
  const address = config.address
    ? parseAddress(config.address, `${prefix}.config.address`)
    : env.VAULT_ADDR
      ? parseAddress(env.VAULT_ADDR, "VAULT_ADDR")
      : DEFAULT_VAULT_ADDRESS;
  const kvRaw = config.kv_version ?? "2";
  if (kvRaw !== "1" && kvRaw !== "2") throw invalid(`${prefix}.config.kv_version`, `must be "1" or "2", got "${kvRaw.slice(0, 20)}"`);
  const namespace = (config.namespace ?? env.VAULT_NAMESPACE ?? "").replace(/^\/+|\/+$/g, "");
  const caPath = config.ca_cert ?? env.VAULT_CACERT;
  const skipTlsVerify = config.tls_skip_verify !== undefined
    ? parseBoolean(config.tls_skip_verify, `${prefix}.config.tls_skip_verify`)
    : env.VAULT_SKIP_VERIFY !== undefined && parseBoolean(env.VAULT_SKIP_VERIFY, "VAULT_SKIP_VERIFY");
  return {
    label: `vault provider "${params.name}"`,
    address,
    mount: cleanMount(config.mount ?? DEFAULT_KV_MOUNT, `${prefix}.config.mount`),
    kvVersion: kvRaw === "1" ? 1 : 2,
    ...(namespace ? { namespace } : {}),
    ...(caPath ? { caPem: readCa(caPath, config.ca_cert ? `${prefix}.config.ca_cert` : "VAULT_CACERT") } : {}),
    skipTlsVerify,
    auth: parseAuth(params, config),
  };
}
