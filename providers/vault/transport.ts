/**
 * The HTTP layer under node-vault, plugged in through its `request-promise` option. node-vault's
 * built-in transport drops response headers and ignores AbortSignal; this one keeps both, so
 * throttling can honour Retry-After and every request stops when its call is cancelled.
 * node-vault still builds every request (paths, X-Vault-Token, X-Vault-Namespace, login bodies)
 * and turns non-2xx answers into its ApiResponseError.
 */
import { ProviderError } from "../errors.ts";
import { parseRetryAfter, sleep } from "../http-retry.ts";

/** One Vault request may take this long before it counts as a timeout. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Throttled requests are retried this many times ... */
export const THROTTLE_MAX_RETRIES = 3;
/** ... within this much waiting per request; beyond it the call fails with PROVIDER_THROTTLED. */
export const THROTTLE_BUDGET_MS = 8_000;
/** First backoff step when a 429 carries no Retry-After; doubles each retry. */
export const THROTTLE_BASE_DELAY_MS = 250;

export interface TransportRequest {
  method: string;
  uri: string;
  headers?: Record<string, string>;
  json?: unknown;
  signal?: AbortSignal;
  /**
   * A successful answer's body as the bytes received, never parsed into strings (KV v1 values
   * polled in the long-lived process): an array on its own ArrayBuffer that the caller zeroes.
   * Error answers are parsed as always (they carry Vault's messages, not values).
   */
  rawBody?: boolean;
}

export interface TransportResponse {
  statusCode: number;
  body: unknown;
  request: { path: string };
}

export interface TransportOptions {
  label: string;
  address: string;
  caPem?: string;
  skipTlsVerify: boolean;
}

async function readBody(response: Response, raw: boolean): Promise<unknown> {
  if (raw && response.ok) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    return bytes.byteLength > 0 ? bytes : undefined;
  }
  const text = await response.text();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not Vault's JSON: node-vault then reports "Status <code>"
  }
}

function networkError(error: unknown, options: TransportOptions, signal?: AbortSignal): ProviderError {
  const name = (error as { name?: string })?.name;
  if (name === "TimeoutError" || (name === "AbortError" && !signal?.aborted)) {
    return new ProviderError("PROVIDER_TIMEOUT", `${options.label}: ${options.address} did not answer within ${REQUEST_TIMEOUT_MS} ms`);
  }
  if (name === "AbortError" || signal?.aborted) {
    return new ProviderError("PROVIDER_TIMEOUT", `${options.label}: call cancelled`);
  }
  const code = String((error as { code?: string })?.code ?? "");
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/i.test(code)) {
    return new ProviderError(
      "PROVIDER_UNAVAILABLE",
      `${options.label}: TLS verification of ${options.address} failed (${code}); trust its CA with config.ca_cert`,
    );
  }
  return new ProviderError("PROVIDER_UNAVAILABLE", `${options.label}: cannot reach ${options.address}${code ? ` (${code})` : ""}`);
}

/**
 * A node-vault `request-promise` replacement. Requests share one throttle gate: after a 429 every
 * request of this provider waits out the delay, so a batch backs off together instead of each
 * request hammering the server on its own.
 */
export function createVaultTransport(options: TransportOptions) {
  let throttledUntil = 0;
  const tls =
    options.caPem || options.skipTlsVerify
      ? { ...(options.caPem ? { ca: options.caPem } : {}), ...(options.skipTlsVerify ? { rejectUnauthorized: false } : {}) }
      : undefined;

  async function send(request: TransportRequest, signal: AbortSignal): Promise<Response> {
    const body = request.json !== undefined && typeof request.json === "object" ? JSON.stringify(request.json) : undefined;
    const headers = { ...request.headers, ...(body ? { "content-type": "application/json" } : {}) };
    const timed = AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    try {
      return await fetch(request.uri, { method: request.method, headers, body, signal: timed, redirect: "manual", ...(tls ? { tls } : {}) });
    } catch (error) {
      throw networkError(error, options, signal);
    }
  }

  async function request(request: TransportRequest): Promise<TransportResponse> {
    const signal = request.signal ?? new AbortController().signal;
    const path = new URL(request.uri).pathname;
    let waited = 0;
    for (let retry = 0; ; retry++) {
      const gate = throttledUntil - Date.now();
      if (gate > 0) await sleep(gate, signal).catch((e) => Promise.reject(networkError(e, options, signal)));
      const response = await send(request, signal);
      if (response.status !== 429) return { statusCode: response.status, body: await readBody(response, request.rawBody === true), request: { path } };
      await response.body?.cancel();
      const delay = parseRetryAfter(response.headers.get("retry-after")) ?? THROTTLE_BASE_DELAY_MS * 2 ** retry;
      if (retry >= THROTTLE_MAX_RETRIES || waited + delay > THROTTLE_BUDGET_MS) {
        throw new ProviderError("PROVIDER_THROTTLED", `${options.label}: Vault is rate limiting requests (429); retry later`, {
          retryAfterMs: Math.ceil(delay),
        });
      }
      waited += delay;
      throttledUntil = Math.max(throttledUntil, Date.now() + delay);
    }
  }

  // node-vault calls `.defaults(rpDefaults)` once; its defaults (json, strictSSL) are decided here.
  return { defaults: () => request };
}
