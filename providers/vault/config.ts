/**
 * Parses a vault provider's `configure` params into settings, naming the offending field on any
 * problem. Compatible with the Go DSO (`config.address`, `config.token`, `config.mount`) and
 * extended with KV v1, namespaces, TLS settings and AppRole login.
 */
import { readFileSync } from "node:fs";
import { assertProviderBlock, parseBlock, parseValue } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import { vaultAddress, vaultAuthParamsSchema, vaultBoolean, vaultConfigSchema, vaultDescriptor } from "./descriptor.ts";
import type { ConfigureParams } from "../types.ts";

export const DEFAULT_VAULT_ADDRESS = "http://127.0.0.1:8200";
export const DEFAULT_KV_MOUNT = "secret";
export const DEFAULT_APPROLE_MOUNT = "approle";

const APPROLE_PARAM_KEYS = ["role_id", "secret_id", "mount"];

export type VaultAuth =
  | { method: "token"; token: string }
  | { method: "approle"; roleId: string; secretId?: string; mount: string }
  /** A fetch process's: the long-lived process's token (configure `session`), which that process keeps alive. */
  | { method: "borrowed"; token: string };

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
    const mount = parseBlock(vaultAuthParamsSchema, `${prefix}.auth.params`, authParams).mount ?? DEFAULT_APPROLE_MOUNT;
    return { method: "approle", roleId, mount, ...(secretId ? { secretId } : {}) };
  }
  throw invalid(`${prefix}.auth.method`, `unsupported for vault: "${method}" (use token or approle)`);
}

export function parseVaultSettings(params: ConfigureParams, env: Record<string, string | undefined>): VaultSettings {
  const prefix = `providers.${params.name}`;
  assertProviderBlock(vaultDescriptor, params.name, { config: params.config });
  const config = parseBlock(vaultConfigSchema, `${prefix}.config`, params.config);
  const address = config.address ?? (env.VAULT_ADDR ? parseValue(vaultAddress, "VAULT_ADDR", env.VAULT_ADDR) : DEFAULT_VAULT_ADDRESS);
  const namespace = (config.namespace ?? env.VAULT_NAMESPACE ?? "").replace(/^\/+|\/+$/g, "");
  const caPath = config.ca_cert ?? env.VAULT_CACERT;
  const skipTlsVerify = config.tls_skip_verify ?? (env.VAULT_SKIP_VERIFY !== undefined && parseValue(vaultBoolean, "VAULT_SKIP_VERIFY", env.VAULT_SKIP_VERIFY));
  return {
    label: `vault provider "${params.name}"`,
    address,
    mount: config.mount ?? DEFAULT_KV_MOUNT,
    kvVersion: config.kv_version ?? 2,
    ...(namespace ? { namespace } : {}),
    ...(caPath ? { caPem: readCa(caPath, config.ca_cert ? `${prefix}.config.ca_cert` : "VAULT_CACERT") } : {}),
    skipTlsVerify,
    auth: borrowedAuth(params) ?? parseAuth(params, params.config),
  };
}

/** A fetch process never logs in: it uses the token the long-lived process lent it. */
function borrowedAuth(params: ConfigureParams): VaultAuth | undefined {
  const token = params.session?.token?.trim();
  return token ? { method: "borrowed", token } : undefined;
}
