/**
 * The Azure Key Vault provider's settings, parsed once from `configure` params. Compatible with
 * the Go DSO: `config.vault_url` is required; everything else is optional. Every problem is a
 * CONFIG_INVALID naming the dso.yaml field.
 */
import { assertProviderBlock, parseBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import { azureConfigSchema, azureDescriptor } from "./descriptor.ts";
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
  assertProviderBlock(azureDescriptor, params.name, { config: params.config });
  const config = parseBlock(azureConfigSchema, `providers.${params.name}.config`, params.config);
  return {
    name: params.name,
    vaultUrl: config.vault_url,
    authorityHost: config.authority_host,
    disableChallengeResourceVerification: config.disable_challenge_resource_verification ?? false,
    auth: parseAuth(params, env),
  };
}
