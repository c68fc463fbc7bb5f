/**
 * Workload identity federation: an `external_account` credentials file (as `gcloud iam
 * workload-identity-pools create-cred-config` writes it). A subject token from another identity
 * provider (an OIDC or SAML token in a file, or served by a URL: Azure IMDS, a local token
 * service) is exchanged at Google's STS (RFC 8693 token exchange) for a federated access token,
 * optionally exchanged again for a service account's token (`generateAccessToken`).
 *
 * Only file- and URL-sourced subject tokens: an `executable` source would run a program named in
 * a credentials file, and an AWS source (`environment_id: aws1`, SigV4-signed GetCallerIdentity)
 * is not implemented; both are refused naming the field. Errors name the step and its HTTP
 * status, never a token or the reply.
 */
import { readBoundedText, readSmallFile, ReplyTooLarge, SmallFileError } from "../bounded-read.ts";
import { ProviderError } from "../errors.ts";

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** A subject token is a JWT or a SAML assertion, a token reply a few hundred bytes: a few KiB. */
const MAX_SUBJECT_TOKEN_BYTES = 64 * 1024;
export const MAX_TOKEN_REPLY_BYTES = 64 * 1024;
const DEFAULT_IMPERSONATION_LIFETIME_S = 3600;

export interface ExternalAccount {
  audience: string;
  subjectTokenType: string;
  tokenUrl: string;
  impersonationUrl?: string;
  impersonationLifetimeSeconds: number;
  /** Workforce pools: the project billed for the exchange. */
  workforcePoolUserProject?: string;
  /** Optional client authentication at the STS (workforce pools). */
  client?: { id: string; secret?: string };
  source: SubjectTokenSource;
}

export type SubjectTokenSource =
  | { kind: "file"; path: string; format: SubjectFormat }
  | { kind: "url"; url: string; headers: Record<string, string>; format: SubjectFormat };

export type SubjectFormat = { type: "text" } | { type: "json"; field: string };

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const str = (value: unknown): string | undefined => (typeof value === "string" && value.trim() !== "" ? value : undefined);

function isLoopback(host: string): boolean {
  return ["127.0.0.1", "localhost", "[::1]"].includes(host);
}

/** Instance metadata services, which answer plain http on a link-local address (Azure IMDS, AWS IMDS). */
function isLinkLocal(host: string): boolean {
  return /^169\.254\.\d{1,3}\.\d{1,3}$/.test(host) || /^\[fe80:/i.test(host) || host.toLowerCase() === "[fd00:ec2::254]";
}

/**
 * Where a subject token or a federated token may be sent: Google's own endpoints (as Google's
 * auth libraries require), or this host (tests, a local emulator). A credentials file naming any
 * other host would hand the subject token, or the federated access token, to that host.
 */
function isGoogleApi(host: string): boolean {
  return host === "googleapis.com" || host.endsWith(".googleapis.com");
}

/** A URL credentials travel to: https to Google's APIs, or this host (tests, local proxies). */
function secureUrl(raw: unknown, field: string, invalid: (field: string, problem: string) => ProviderError): string {
  const value = str(raw);
  if (!value) throw invalid(field, "is missing");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(field, "is not a URL");
  }
  if (isLoopback(url.hostname) && (url.protocol === "https:" || url.protocol === "http:")) return value;
  if (url.protocol !== "https:") throw invalid(field, "must be an https:// URL (it carries a token)");
  if (!isGoogleApi(url.hostname)) throw invalid(field, `must be a Google endpoint (*.googleapis.com), not ${url.hostname}: it is sent a token`);
  return value;
}

function parseFormat(raw: unknown, invalid: (field: string, problem: string) => ProviderError): SubjectFormat {
  if (raw === undefined) return { type: "text" };
  if (!isObject(raw)) throw invalid("credential_source.format", "must be an object");
  const type = raw.type ?? "text";
  if (type === "text") return { type: "text" };
  if (type !== "json") throw invalid("credential_source.format.type", "must be text or json");
  const field = str(raw.subject_token_field_name);
  if (!field) throw invalid("credential_source.format.subject_token_field_name", "is required for format json");
  return { type: "json", field };
}

function parseSource(raw: unknown, invalid: (field: string, problem: string) => ProviderError): SubjectTokenSource {
  if (!isObject(raw)) throw invalid("credential_source", "is missing");
  if (raw.executable !== undefined) {
    throw invalid("credential_source.executable", "executable-sourced credentials are not supported (they would run a program named in a credentials file); use a file or url source");
  }
  if (typeof raw.environment_id === "string" && raw.environment_id.toLowerCase().startsWith("aws")) {
    throw invalid("credential_source.environment_id", "AWS-sourced credentials are not supported; use a file or url source, or the aws provider");
  }
  const format = parseFormat(raw.format, invalid);
  if (raw.file !== undefined && raw.url !== undefined) throw invalid("credential_source", "has both file and url; keep one");
  if (raw.file !== undefined) {
    const path = str(raw.file);
    if (!path) throw invalid("credential_source.file", "must be a file path");
    return { kind: "file", path, format };
  }
  if (raw.url !== undefined) {
    const value = str(raw.url);
    let url: URL | undefined;
    try {
      url = value ? new URL(value) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) throw invalid("credential_source.url", "must be an http(s) URL");
    // Plain http only where instance metadata services answer (Azure IMDS at 169.254.169.254) or
    // to this host: anywhere else the subject token (and the headers) would cross the network in clear.
    if (url.protocol === "http:" && !isLoopback(url.hostname) && !isLinkLocal(url.hostname)) {
      throw invalid("credential_source.url", "must be https:// (plain http only to a link-local metadata address or this host)");
    }
    const headers = raw.headers ?? {};
    if (!isObject(headers)) throw invalid("credential_source.headers", "must map header names to strings");
    for (const [name, header] of Object.entries(headers)) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/.test(name)) throw invalid("credential_source.headers", "has a header name that is not a token (RFC 9110)");
      if (typeof header !== "string" || /[\r\n\0]/.test(header) || header.length > 8192) throw invalid(`credential_source.headers.${name}`, "must be a one-line string");
    }
    return { kind: "url", url: value!, headers: headers as Record<string, string>, format };
  }
  throw invalid("credential_source", "needs file or url (executable and AWS sources are not supported)");
}

/** Parses an external_account file's JSON (already known to have that type). */
export function parseExternalAccount(json: Json, invalid: (field: string, problem: string) => ProviderError): ExternalAccount {
  const audience = str(json.audience);
  if (!audience) throw invalid("audience", "is missing");
  const subjectTokenType = str(json.subject_token_type);
  if (!subjectTokenType) throw invalid("subject_token_type", "is missing");
  const tokenUrl = secureUrl(json.token_url, "token_url", invalid);
  const impersonationUrl = json.service_account_impersonation_url === undefined ? undefined : secureUrl(json.service_account_impersonation_url, "service_account_impersonation_url", invalid);
  const lifetimeRaw = isObject(json.service_account_impersonation) ? json.service_account_impersonation.token_lifetime_seconds : undefined;
  const lifetime = lifetimeRaw === undefined ? DEFAULT_IMPERSONATION_LIFETIME_S : Number(lifetimeRaw);
  if (!Number.isInteger(lifetime) || lifetime < 600 || lifetime > 43_200) throw invalid("service_account_impersonation.token_lifetime_seconds", "must be 600 to 43200");
  const clientId = str(json.client_id);
  const clientSecret = str(json.client_secret);
  const userProject = str(json.workforce_pool_user_project);
  return {
    audience,
    subjectTokenType,
    tokenUrl,
    impersonationLifetimeSeconds: lifetime,
    source: parseSource(json.credential_source, invalid),
    ...(impersonationUrl ? { impersonationUrl } : {}),
    ...(userProject ? { workforcePoolUserProject: userProject } : {}),
    ...(clientId ? { client: { id: clientId, ...(clientSecret ? { secret: clientSecret } : {}) } } : {}),
  };
}

/** Where a token request failed: the error code and a message without the token or the reply. */
export type Failure = (code: "PROVIDER_AUTH" | "PROVIDER_UNAVAILABLE" | "PROVIDER_TIMEOUT", message: string) => ProviderError;

function pickToken(text: string, format: SubjectFormat, step: string, fail: Failure): string {
  if (format.type === "text") {
    const token = text.trim();
    if (!token) throw fail("PROVIDER_AUTH", `${step} is empty`);
    return token;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw fail("PROVIDER_AUTH", `${step} is not JSON (credential_source.format.type is json)`);
  }
  const token = isObject(json) ? str(json[format.field]) : undefined;
  if (!token) throw fail("PROVIDER_AUTH", `${step} has no string field "${format.field}" (credential_source.format.subject_token_field_name)`);
  return token.trim();
}

/** The subject token, read fresh each exchange (the identity provider rotates it). */
export async function subjectToken(source: SubjectTokenSource, signal: AbortSignal, fail: Failure): Promise<string> {
  if (source.kind === "file") {
    const step = `the subject token file ${source.path}`;
    let text: string;
    try {
      text = readSmallFile(source.path, MAX_SUBJECT_TOKEN_BYTES);
    } catch (error) {
      const why = error instanceof SmallFileError && error.message !== "cannot be read" ? `${step} ${error.message}` : `cannot read ${step}`;
      throw fail("PROVIDER_AUTH", `${why} (credential_source.file)`);
    }
    return pickToken(text, source.format, step, fail);
  }
  const step = `the subject token URL (credential_source.url, ${new URL(source.url).host})`;
  const response = await fetch(source.url, { headers: source.headers, signal, redirect: "manual" });
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw fail(response.status >= 500 ? "PROVIDER_UNAVAILABLE" : "PROVIDER_AUTH", `${step} answered HTTP ${response.status}`);
  }
  let text: string;
  try {
    text = await readBoundedText(response, MAX_SUBJECT_TOKEN_BYTES);
  } catch (error) {
    if (error instanceof ReplyTooLarge) throw fail("PROVIDER_AUTH", `${step} answered with more than a token`);
    throw error;
  }
  return pickToken(text, source.format, step, fail);
}

/** The STS request body (RFC 8693 token exchange, as Google's STS takes it). */
export function exchangeBody(account: ExternalAccount, subject: string, scope: string): URLSearchParams {
  const body = new URLSearchParams({
    grant_type: TOKEN_EXCHANGE_GRANT,
    audience: account.audience,
    scope,
    requested_token_type: ACCESS_TOKEN_TYPE,
    subject_token: subject,
    subject_token_type: account.subjectTokenType,
  });
  if (account.workforcePoolUserProject && !account.client) body.set("options", JSON.stringify({ userProject: account.workforcePoolUserProject }));
  return body;
}

export function exchangeHeaders(account: ExternalAccount): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (account.client) headers.authorization = `Basic ${Buffer.from(`${account.client.id}:${account.client.secret ?? ""}`).toString("base64")}`;
  return headers;
}

/** Reads `generateAccessToken`'s reply: {accessToken, expireTime}. */
export async function readImpersonated(response: Response, step: string, fail: Failure): Promise<{ token: string; expiresAt: number }> {
  if (!response.ok) {
    await response.body?.cancel();
    throw fail(response.status >= 500 ? "PROVIDER_UNAVAILABLE" : "PROVIDER_AUTH", `${step} refused (HTTP ${response.status}); the pool's principal needs roles/iam.workloadIdentityUser on the service account`);
  }
  let reply: unknown;
  try {
    reply = JSON.parse(await readBoundedText(response, MAX_TOKEN_REPLY_BYTES));
  } catch (error) {
    throw fail("PROVIDER_UNAVAILABLE", error instanceof ReplyTooLarge ? `${step} answered with more than a token` : `${step} answered with something that is not JSON`);
  }
  const token = isObject(reply) ? str(reply.accessToken) : undefined;
  if (!token) throw fail("PROVIDER_UNAVAILABLE", `${step} answered without an accessToken`);
  const expires = Date.parse(String((reply as Json).expireTime ?? ""));
  return { token, expiresAt: Number.isFinite(expires) ? expires : Date.now() + 300_000 };
}
