/** The azure provider as the agent side knows it (see ProviderDescriptor). */
import type { ProviderDescriptor } from "../types.ts";

export const azureDescriptor: ProviderDescriptor = {
  type: "azure",
  configKeys: ["vault_url", "authority_host", "disable_challenge_resource_verification"],
  authParamKeys: ["tenant_id", "client_id"],
  authMethods: ["default", "client_secret", "service_principal", "managed_identity"],
  env: [
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_ADDITIONALLY_ALLOWED_TENANTS", "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
  ],
  credentials: ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "IDENTITY_HEADER", "MSI_SECRET"],
  load: () => import("./index.ts").then((m) => m.azureProvider),
};
