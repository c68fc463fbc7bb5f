/** The vault provider as the agent side knows it (see ProviderDescriptor). */
import type { ProviderDescriptor } from "../types.ts";

export const vaultDescriptor: ProviderDescriptor = {
  type: "vault",
  configKeys: ["address", "token", "mount", "kv_version", "namespace", "ca_cert", "tls_skip_verify"],
  authParamKeys: ["role_id", "secret_id", "mount"],
  authMethods: ["token", "approle"],
  env: ["VAULT_ADDR", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_SKIP_VERIFY"],
  credentials: ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"],
  load: () => import("./index.ts").then((m) => m.vaultProvider),
};
