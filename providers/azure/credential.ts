/**
 * Turns the auth settings into an @azure/identity credential. Credentials never come from this
 * process's environment: the agent passes AZURE_CLIENT_SECRET in `configure`, and we hand it to
 * the SDK as a constructor argument, so nothing secret is ever put in process.env (which the
 * developer credentials of DefaultAzureCredential would pass to `az` child processes).
 */
import {
  ChainedTokenCredential,
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  type TokenCredential,
} from "@azure/identity";
import type { AzureSettings } from "./config.ts";

/** Authority hosts of the Azure clouds; MSAL can run instance discovery against these. */
const AZURE_AUTHORITY_HOSTS = new Set([
  "login.microsoftonline.com",
  "login.chinacloudapi.cn",
  "login.microsoftonline.us",
]);

function authorityOptions(settings: AzureSettings) {
  if (!settings.authorityHost) return {};
  // Instance discovery asks login.microsoft.com about the authority: impossible for Azure Stack,
  // ADFS or a local token endpoint, so skip it for any host that is not an Azure cloud.
  const known = AZURE_AUTHORITY_HOSTS.has(new URL(settings.authorityHost).hostname);
  return { authorityHost: settings.authorityHost, disableInstanceDiscovery: !known };
}

export function buildCredential(settings: AzureSettings, credentials: Record<string, string> = {}): TokenCredential {
  const auth = settings.auth;
  const authority = authorityOptions(settings);
  switch (auth.method) {
    case "client_secret":
      return new ClientSecretCredential(auth.tenantId, auth.clientId, auth.clientSecret, authority);
    case "managed_identity":
      return auth.clientId ? new ManagedIdentityCredential({ clientId: auth.clientId }) : new ManagedIdentityCredential();
    case "default": {
      const chain = new DefaultAzureCredential({
        ...authority,
        ...(auth.tenantId ? { tenantId: auth.tenantId } : {}),
        ...(auth.clientId ? { managedIdentityClientId: auth.clientId, workloadIdentityClientId: auth.clientId } : {}),
      });
      // DefaultAzureCredential's environment step would read AZURE_CLIENT_SECRET from env, which
      // the child does not have; put the service principal first when the agent sent its secret.
      const secret = credentials.AZURE_CLIENT_SECRET;
      if (!secret || !auth.tenantId || !auth.clientId) return chain;
      return new ChainedTokenCredential(new ClientSecretCredential(auth.tenantId, auth.clientId, secret, authority), chain);
    }
  }
}
