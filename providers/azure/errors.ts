/**
 * Maps whatever the Azure SDK throws to a ProviderError. Messages are ours, never the service's
 * text: Azure error bodies and identity errors can carry correlation ids, tenant details and,
 * for MSAL, parts of the token request.
 */
import { ProviderError } from "../errors.ts";

/** When Azure throttles without saying for how long, ask the agent to wait this long. */
export const DEFAULT_THROTTLE_WAIT_MS = 5_000;

/** Errors that concern one secret and belong in-band; the rest fail the whole call. */
export function isPerSecretError(error: ProviderError): boolean {
  return error.rpcCode === "SECRET_NOT_FOUND" || error.rpcCode === "CONFIG_INVALID";
}

interface RestErrorLike {
  statusCode?: number;
  code?: string;
  details?: unknown;
  response?: { headers: { get(name: string): string | undefined } };
}

/** The SDK's RestError, recognised by shape: @azure/core-rest-pipeline is not our direct dependency. */
function isRestError(error: unknown): error is Error & RestErrorLike {
  return error instanceof Error && error.name === "RestError";
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "";
}

/** Retry-After (seconds or an HTTP date) or the ms variants Azure also sends, in ms. */
export function retryAfterMs(headers: { get(name: string): string | undefined } | undefined): number | undefined {
  if (!headers) return undefined;
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const ms = Number(headers.get(name));
    if (headers.get(name) && Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  }
  const raw = headers.get("retry-after");
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

/** The service's error code from a Key Vault error body ({"error":{"code","innererror":{"code"}}}). */
function serviceCodes(error: { code?: string; details?: unknown }): string[] {
  // The wire says `innererror`; the SDK's deserializer renames it `innerError`.
  type Inner = { code?: string };
  const details = error.details as { error?: { code?: string; innererror?: Inner; innerError?: Inner } } | undefined;
  const inner = details?.error?.innerError ?? details?.error?.innererror;
  return [error.code, details?.error?.code, inner?.code].filter((c): c is string => !!c);
}

export function toAzureError(error: unknown, instance: string, what: string): ProviderError {
  if (error instanceof ProviderError) return error;
  const who = `provider ${instance} (azure)`;
  const name = errorName(error);
  if (name === "AbortError") return new ProviderError("PROVIDER_TIMEOUT", `${who}: ${what} was cancelled or timed out`);
  if (name === "CredentialUnavailableError" || name === "AggregateAuthenticationError") {
    return new ProviderError("PROVIDER_AUTH", `${who}: no usable Azure credential (check auth.method and its settings)`);
  }
  if (name === "AuthenticationError" || name === "AuthenticationRequiredError") {
    return new ProviderError("PROVIDER_AUTH", `${who}: Azure AD refused the credential (wrong, expired or revoked secret, or unknown tenant/client id)`);
  }
  if (!isRestError(error)) {
    return new ProviderError("PROVIDER_UNAVAILABLE", `${who}: ${what} failed (${name || "unknown error"})`);
  }
  const status = error.statusCode;
  const codes = serviceCodes(error);
  if (status === 404) return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: not found`);
  if (status === 403 && codes.includes("SecretDisabled")) {
    return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: the secret version is disabled`);
  }
  if (status === 401 || status === 403) {
    return new ProviderError("PROVIDER_AUTH", `${who}: Key Vault refused access (HTTP ${status}); check the identity's permissions (get, list on secrets)`);
  }
  if (status === 429) {
    const wait = retryAfterMs(error.response?.headers) ?? DEFAULT_THROTTLE_WAIT_MS;
    return new ProviderError("PROVIDER_THROTTLED", `${who}: Key Vault is throttling requests; retry in ${Math.ceil(wait / 1000)} s`, {
      retryAfterMs: wait,
    });
  }
  if (status === 400 && codes.includes("BadParameter")) return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: rejected as invalid`);
  const detail = status ? `HTTP ${status}` : error.code ?? "network error";
  return new ProviderError("PROVIDER_UNAVAILABLE", `${who}: ${what} failed (${detail})`);
}
