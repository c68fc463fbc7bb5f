/**
 * The azure provider as the agent side knows it (see ProviderDescriptor), with the rules of its
 * config values, which `dso config validate` and the provider (config.ts) share.
 */
import * as v from "valibot";
import { booleanValue, urlValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

/** An absolute https URL without a trailing slash; plain http would send the bearer token in clear. */
const httpsUrl = v.pipe(
  urlValue("must be an https:// URL", (url) => {
    if (url.protocol !== "https:") return "must be an https:// URL (Azure refuses tokens over plain http)";
    if (url.username || url.password) return "must not hold a user or password";
    return undefined;
  }),
  v.transform((url) => url.toString().replace(/\/+$/, "")),
);

export const azureConfigSchema = v.object(
  {
    vault_url: httpsUrl,
    authority_host: v.optional(httpsUrl),
    /** Needed for a vault host that is not *.vault.azure.net and friends (emulators, private endpoints). */
    disable_challenge_resource_verification: v.optional(booleanValue()),
  },
  // The message of a missing key; vault_url is the only required one.
  "required (e.g. https://myvault.vault.azure.net)",
);

export const azureAuthParamsSchema = v.object({
  tenant_id: v.optional(v.string()),
  client_id: v.optional(v.string()),
});

export const azureDescriptor: ProviderDescriptor = {
  type: "azure",
  config: azureConfigSchema,
  authParams: azureAuthParamsSchema,
  authMethods: ["default", "client_secret", "service_principal", "managed_identity"],
  env: [
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_ADDITIONALLY_ALLOWED_TENANTS", "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
  ],
  credentials: ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "IDENTITY_HEADER", "MSI_SECRET"],
  load: () => import("./index.ts").then((m) => m.azureProvider),
};
