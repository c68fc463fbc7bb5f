/**
 * Turns what node-vault throws into value-free ProviderErrors. Vault's own error text is not
 * echoed except for server-side failures, where it is a status description (sealed, standby).
 */
import { scrubMessage, ProviderError } from "../errors.ts";

interface ApiResponseError {
  response: { statusCode: number; body?: { errors?: unknown[] } };
}

export function vaultStatus(error: unknown): number | undefined {
  const status = (error as Partial<ApiResponseError>)?.response?.statusCode;
  return typeof status === "number" ? status : undefined;
}

function serverText(error: unknown): string {
  const first = (error as ApiResponseError).response.body?.errors?.[0];
  return typeof first === "string" && first ? `: ${scrubMessage(first).slice(0, 160)}` : "";
}

/** `subject` names what was asked for, e.g. `secret "db" in secret/`; it must hold no value. */
export function toVaultError(error: unknown, label: string, subject: string): ProviderError {
  if (error instanceof ProviderError) return error;
  const status = vaultStatus(error);
  if (status === undefined) {
    // tv4 validation errors and anything unexpected: keep the type, never the payload.
    return new ProviderError("PROVIDER_UNAVAILABLE", `${label}: ${subject} failed (${(error as Error)?.name ?? "error"})`);
  }
  if (status === 401 || status === 403) {
    return new ProviderError("PROVIDER_AUTH", `${label}: permission denied for ${subject}; the token is invalid, expired or its policy does not allow this`);
  }
  if (status === 404) return new ProviderError("SECRET_NOT_FOUND", `${label}: ${subject} not found`);
  if (status === 429) return new ProviderError("PROVIDER_THROTTLED", `${label}: Vault is rate limiting requests (429)`);
  if (status >= 500) return new ProviderError("PROVIDER_UNAVAILABLE", `${label}: Vault answered ${status} for ${subject}${serverText(error)}`);
  if (status >= 300 && status < 400) {
    // Redirects are not followed: that would hand the token to whatever host the answer names.
    return new ProviderError("PROVIDER_UNAVAILABLE", `${label}: Vault redirected ${subject} (HTTP ${status}); point config.address at the active node or its load balancer`);
  }
  return new ProviderError("PROVIDER_UNAVAILABLE", `${label}: Vault refused ${subject} (HTTP ${status})`);
}
