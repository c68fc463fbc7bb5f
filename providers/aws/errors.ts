/**
 * AWS SDK errors → ProviderError. Messages carry the provider instance, the AWS error code and at
 * most the secret's name: never the SDK's own message (it may echo request ids, ARNs with account
 * ids or key ids) and never a value.
 */
import { ProviderError } from "../errors.ts";

/** When AWS throttles and sends no Retry-After, the agent waits this long before polling again. */
export const THROTTLED_RETRY_AFTER_MS = 5_000;

const CREDENTIAL_ERRORS = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "IncompleteSignatureException",
  "ExpiredTokenException",
  "ExpiredToken",
  "InvalidClientTokenId",
  "SignatureDoesNotMatch",
  "CredentialsProviderError",
  "MissingAuthenticationTokenException",
]);
const THROTTLING_ERRORS = new Set(["ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"]);
const NOT_FOUND_ERRORS = new Set(["ResourceNotFoundException"]);
const ACCESS_DENIED = "AccessDeniedException";
const TIMEOUT_ERRORS = new Set(["TimeoutError", "RequestTimeout", "RequestTimeoutException"]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string> };
}

/** The AWS error code of anything the SDK threw, e.g. "ThrottlingException". */
export function awsErrorCode(error: unknown): string {
  if (!error || typeof error !== "object") return "UnknownError";
  const e = error as SdkErrorShape;
  const code = e.name && e.name !== "Error" ? e.name : e.code;
  return code && /^[A-Za-z0-9_.:-]{1,80}$/.test(code) ? code : "UnknownError";
}

function httpStatus(error: unknown): number | undefined {
  return (error as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
}

export function isAccessDenied(error: unknown): boolean {
  return awsErrorCode(error) === ACCESS_DENIED;
}

/** Retry-After (seconds or an HTTP date) from the last response, if AWS sent one. */
function retryAfterMs(error: unknown): number {
  const headers = (error as SdkErrorShape | undefined)?.$response?.headers ?? {};
  const raw = Object.entries(headers).find(([k]) => k.toLowerCase() === "retry-after")?.[1];
  if (raw === undefined) return THROTTLED_RETRY_AFTER_MS;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? THROTTLED_RETRY_AFTER_MS : Math.max(0, date - Date.now());
}

/**
 * Credentials failing fails the whole RPC call; every other error is reported on the refs it
 * concerns, so one missing, denied or throttled secret does not hide the values of the others.
 */
export function isCredentialError(error: unknown): boolean {
  return CREDENTIAL_ERRORS.has(awsErrorCode(error));
}

/** `secret` names the secret for per-secret failures (not found, access denied on it). */
export function toProviderError(error: unknown, provider: string, secret?: string): ProviderError {
  if (error instanceof ProviderError) return error;
  const code = awsErrorCode(error);
  const who = `provider ${provider} (aws)`;
  const what = secret === undefined ? "" : ` secret "${secret}"`;
  if (CREDENTIAL_ERRORS.has(code)) return new ProviderError("PROVIDER_AUTH", `${who}: credentials rejected (${code})`);
  if (code === ACCESS_DENIED) return new ProviderError("PROVIDER_AUTH", `${who}:${what || " request"} access denied (${code})`);
  if (THROTTLING_ERRORS.has(code) || httpStatus(error) === 429) {
    return new ProviderError("PROVIDER_THROTTLED", `${who}: throttled by AWS after retries (${code})`, { retryAfterMs: retryAfterMs(error) });
  }
  if (NOT_FOUND_ERRORS.has(code)) return new ProviderError("SECRET_NOT_FOUND", `${who}:${what} not found (${code})`);
  // GetSecretValue on a secret scheduled for deletion: it is gone for delivery purposes.
  if (code === "InvalidRequestException" && secret !== undefined) {
    return new ProviderError("SECRET_NOT_FOUND", `${who}:${what} is scheduled for deletion or disabled (${code})`);
  }
  if (code === "DecryptionFailure") return new ProviderError("PROVIDER_AUTH", `${who}:${what} cannot be decrypted with its KMS key (${code})`);
  if (code === "AbortError") return new ProviderError("PROVIDER_TIMEOUT", `${who}: call cancelled`);
  if (TIMEOUT_ERRORS.has(code)) return new ProviderError("PROVIDER_TIMEOUT", `${who}: AWS did not answer in time (${code})`);
  const status = httpStatus(error);
  if (status === undefined || status >= 500) {
    return new ProviderError("PROVIDER_UNAVAILABLE", `${who}: Secrets Manager unreachable or failing (${code})`);
  }
  return new ProviderError("PROVIDER_UNAVAILABLE", `${who}:${what} request refused (${code})`);
}
