/**
 * OAuth2 access tokens for Secret Manager, without an SDK: the JWT-bearer grant (RFC 7523) with a
 * service-account key, signed RS256 with node:crypto, the Compute Engine metadata server, or
 * workload identity federation (external-account.ts: STS token exchange). A
 * token is cached until a minute before it expires. Errors say which step failed, never the key,
 * the assertion or the token (the service's reply is not echoed).
 */
import { createPrivateKey, createSign } from "node:crypto";
import { readBoundedText, ReplyTooLarge } from "../bounded-read.ts";
import { ProviderError } from "../errors.ts";
import type { GcpAuth, ServiceAccountKey } from "./config.ts";
import { CallLevelError } from "./errors.ts";
import { exchangeBody, exchangeHeaders, MAX_TOKEN_REPLY_BYTES, readImpersonated, subjectToken } from "./external-account.ts";

export const CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform";
export const TOKEN_REQUEST_TIMEOUT_MS = 10_000;
/** Refresh this long before the token's expiry. */
const EXPIRY_MARGIN_MS = 60_000;
const ASSERTION_LIFETIME_S = 3600;

export interface TokenSource {
  /** A valid access token; `fresh` skips the cache (after a 401). */
  token(signal: AbortSignal, fresh?: boolean): Promise<string>;
}

const base64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/** The signed JWT a service account presents to the token endpoint. */
export function serviceAccountAssertion(key: ServiceAccountKey, nowMs = Date.now()): string {
  const iat = Math.floor(nowMs / 1000);
  const header = { alg: "RS256", typ: "JWT", ...(key.privateKeyId ? { kid: key.privateKeyId } : {}) };
  const claims = { iss: key.clientEmail, sub: key.clientEmail, scope: CLOUD_PLATFORM_SCOPE, aud: key.tokenUri, iat, exp: iat + ASSERTION_LIFETIME_S };
  const unsigned = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  let signature: Buffer;
  try {
    signature = createSign("RSA-SHA256").update(unsigned).sign(createPrivateKey(key.privateKey));
  } catch {
    throw new CallLevelError("CONFIG_INVALID", "the service-account key's private_key cannot sign (not an RSA private key)");
  }
  return `${unsigned}.${base64url(signature)}`;
}

interface TokenReply {
  access_token?: unknown;
  expires_in?: unknown;
}

async function readToken(response: Response, who: string, step: string): Promise<{ token: string; expiresAt: number }> {
  if (!response.ok) {
    await response.body?.cancel();
    const code = response.status === 400 || response.status === 401 || response.status === 403 ? "PROVIDER_AUTH" : "PROVIDER_UNAVAILABLE";
    throw new CallLevelError(code, `${who}: ${step} refused (HTTP ${response.status}); check the credentials file or the instance's service account`);
  }
  let reply: TokenReply;
  try {
    reply = JSON.parse(await readBoundedText(response, MAX_TOKEN_REPLY_BYTES)) as TokenReply;
  } catch (error) {
    throw new CallLevelError("PROVIDER_UNAVAILABLE", `${who}: ${step} answered with ${error instanceof ReplyTooLarge ? "more than a token" : "something that is not JSON"}`);
  }
  if (typeof reply?.access_token !== "string" || !reply.access_token) throw new CallLevelError("PROVIDER_UNAVAILABLE", `${who}: ${step} answered without an access_token`);
  const seconds = typeof reply.expires_in === "number" && reply.expires_in > 0 ? reply.expires_in : 300;
  return { token: reply.access_token, expiresAt: Date.now() + seconds * 1000 };
}

function networkError(error: unknown, who: string, step: string, signal: AbortSignal): ProviderError {
  const name = (error as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError" || signal.aborted) return new CallLevelError("PROVIDER_TIMEOUT", `${who}: ${step} timed out or was cancelled`);
  const code = (error as { code?: string })?.code;
  return new CallLevelError("PROVIDER_UNAVAILABLE", `${who}: cannot reach ${step}${code ? ` (${code})` : ""}`);
}

/** One way of getting a token (key, metadata server, federation): the step it names and the request. */
interface Grant {
  step: string;
  obtain(signal: AbortSignal): Promise<{ token: string; expiresAt: number }>;
}

function grantOf(auth: GcpAuth, who: string): Grant {
  const fail = (code: "PROVIDER_AUTH" | "PROVIDER_UNAVAILABLE" | "PROVIDER_TIMEOUT", message: string) => new CallLevelError(code, `${who}: ${message}`);
  if (auth.method === "metadata") {
    const step = `the metadata server (${auth.metadataHost})`;
    return {
      step,
      obtain: async (signal) =>
        readToken(
          await fetch(`http://${auth.metadataHost}/computeMetadata/v1/instance/service-accounts/default/token`, { headers: { "Metadata-Flavor": "Google" }, signal, redirect: "manual" }),
          who,
          step,
        ),
    };
  }
  if (auth.method === "service_account_key") {
    const step = "the OAuth token endpoint";
    return {
      step,
      async obtain(signal) {
        const body = new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: serviceAccountAssertion(auth.key) });
        return readToken(await fetch(auth.key.tokenUri, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body, signal, redirect: "manual" }), who, step);
      },
    };
  }
  const account = auth.account;
  return {
    step: "the workload identity federation endpoints (credential_source.url, token_url, service_account_impersonation_url)",
    async obtain(signal) {
      const subject = await subjectToken(account.source, signal, fail);
      const sts = await readToken(
        await fetch(account.tokenUrl, { method: "POST", headers: exchangeHeaders(account), body: exchangeBody(account, subject, CLOUD_PLATFORM_SCOPE), signal, redirect: "manual" }),
        who,
        "the STS token exchange (token_url)",
      );
      if (!account.impersonationUrl) return sts;
      const impersonated = await fetch(account.impersonationUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${sts.token}`, "content-type": "application/json" },
        body: JSON.stringify({ scope: [CLOUD_PLATFORM_SCOPE], lifetime: `${account.impersonationLifetimeSeconds}s` }),
        signal,
        redirect: "manual",
      });
      return readImpersonated(impersonated, "service-account impersonation (service_account_impersonation_url)", fail);
    },
  };
}

export function tokenSource(auth: GcpAuth, who: string): TokenSource {
  let cached: { token: string; expiresAt: number } | undefined;
  const grant = grantOf(auth, who);

  /** The request has its own time limit, not a caller's: callers that share it may give up one by one. */
  async function obtain(): Promise<{ token: string; expiresAt: number }> {
    const timed = AbortSignal.timeout(TOKEN_REQUEST_TIMEOUT_MS);
    try {
      return await grant.obtain(timed);
    } catch (error) {
      if (error instanceof ProviderError) throw error;
      throw networkError(error, who, grant.step, timed);
    }
  }

  /** `pending` until it settles, or a PROVIDER_TIMEOUT as soon as this caller's signal aborts. */
  function until<T>(pending: Promise<T>, signal: AbortSignal): Promise<T> {
    const cancelled = () => new CallLevelError("PROVIDER_TIMEOUT", `${who}: ${grant.step} timed out or was cancelled`);
    if (signal.aborted) return Promise.reject(cancelled());
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(cancelled());
      signal.addEventListener("abort", onAbort, { once: true });
      pending.then(
        (value) => (signal.removeEventListener("abort", onAbort), resolve(value)),
        (error: unknown) => (signal.removeEventListener("abort", onAbort), reject(error)),
      );
    });
  }

  /** One token request at a time: parallel calls of a batch share it. */
  let pending: Promise<{ token: string; expiresAt: number }> | undefined;
  return {
    async token(signal, fresh = false) {
      if (!fresh && cached && cached.expiresAt - EXPIRY_MARGIN_MS > Date.now()) return cached.token;
      if (fresh) cached = undefined;
      pending ??= obtain()
        .then((got) => (cached = got))
        .finally(() => (pending = undefined));
      return (await until(pending, signal)).token;
    },
  };
}
