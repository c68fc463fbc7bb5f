/**
 * The Azure Key Vault provider's settings, parsed once from `configure` params. Compatible with
 * the Go DSO: `config.vault_url` is required; everything else is optional. Every problem is a
 * CONFIG_INVALID naming the dso.yaml field.
 */
import { assertProviderBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import { azureDescriptor } from "./descriptor.ts";
import type { ConfigureParams } from "../types.ts";

export type AzureAuth =
  | { method: "default"; tenantId?: string; clientId?: string }
  | { method: "client_secret"; tenantId: string; clientId: string; clientSecret: string }
  | { method: "managed_identity"; clientId?: string };

export interface AzureSettings {
  /** Instance name from dso.yaml, for messages. */
  name: string;
  vaultUrl: string;
  authorityHost?: string;
  /** Needed for a vault host that is not *.vault.azure.net and friends (emulators, private endpoints). */
  disableChallengeResourceVerification: boolean;
  auth: AzureAuth;
}

const METHODS: Record<string, AzureAuth["method"]> = {
  default: "default",
  client_secret: "client_secret",
  service_principal: "client_secret",
  managed_identity: "managed_identity",
};
const PARAMS_BY_METHOD: Record<AzureAuth["method"], Set<string>> = {
  default: new Set(["tenant_id", "client_id"]),
  client_secret: new Set(["tenant_id", "client_id"]),
  managed_identity: new Set(["client_id"]),
};

function invalid(field: string, problem: string): ProviderError {
  return new ProviderError("CONFIG_INVALID", `${field}: ${problem}`);
}

/** An absolute https URL; plain http would send the bearer token in clear. */
function httpsUrl(value: string, field: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(field, "must be an https:// URL");
  }
  if (url.protocol !== "https:") throw invalid(field, "must be an https:// URL (Azure refuses tokens over plain http)");
  if (url.username || url.password) throw invalid(field, "must not hold a user or password");
  return url.toString().replace(/\/+$/, "");
}

function parseBoolean(value: string, field: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw invalid(field, 'must be "true" or "false"');
}

function parseAuth(params: ConfigureParams, env: Record<string, string | undefined>): AzureAuth {
  const prefix = `providers.${params.name}.auth`;
  const rawMethod = params.auth?.method ?? "default";
  const method = METHODS[rawMethod];
  if (!method) {
    throw invalid(`${prefix}.method`, `unknown method "${rawMethod}" for azure (use default, client_secret, service_principal or managed_identity)`);
  }
  const authParams = params.auth?.params ?? {};
  for (const key of Object.keys(authParams)) {
    if (!PARAMS_BY_METHOD[method].has(key)) throw invalid(`${prefix}.params.${key}`, `unknown key for azure auth method ${rawMethod}`);
  }
  const tenantId = authParams.tenant_id ?? env.AZURE_TENANT_ID;
  const clientId = authParams.client_id ?? env.AZURE_CLIENT_ID;
  if (method === "default") return { method, tenantId, clientId };
  if (method === "managed_identity") return { method, clientId: authParams.client_id };
  if (!tenantId) throw invalid(`${prefix}.params.tenant_id`, "required for client_secret (or set AZURE_TENANT_ID)");
  if (!clientId) throw invalid(`${prefix}.params.client_id`, "required for client_secret (or set AZURE_CLIENT_ID)");
  const clientSecret = params.credentials?.AZURE_CLIENT_SECRET;
  if (!clientSecret) throw invalid(prefix, "client_secret needs AZURE_CLIENT_SECRET in the agent's environment");
  return { method, tenantId, clientId, clientSecret };
}

export function parseAzureSettings(params: ConfigureParams, env: Record<string, string | undefined>): AzureSettings {
  const prefix = `providers.${params.name}.config`;
  assertProviderBlock(azureDescriptor, params.name, { config: params.config });
  const { vault_url, authority_host, disable_challenge_resource_verification } = params.config;
  if (!vault_url) throw invalid(`${prefix}.vault_url`, "required (e.g. https://myvault.vault.azure.net)");
  return {
    name: params.name,
    vaultUrl: httpsUrl(vault_url, `${prefix}.vault_url`),
    authorityHost: authority_host === undefined ? undefined : httpsUrl(authority_host, `${prefix}.authority_host`),
    disableChallengeResourceVerification:
      disable_challenge_resource_verification === undefined
        ? false
        : parseBoolean(disable_challenge_resource_verification, `${prefix}.disable_challenge_resource_verification`),
    auth: parseAuth(params, env),
  };
}
