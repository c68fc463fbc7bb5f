/**
 * The Secret Manager REST calls DSO makes (v1): a version's metadata, a list of enabled versions,
 * a version's payload. One place for the bearer token, the per-project metadata quota (a token
 * bucket: QuotaBucket), throttling (a 429's Retry-After pauses every request of this process,
 * within THROTTLE_BUDGET_MS) and Google's JSON error shape
 * (`{"error": {"code", "message", "status"}}`), turned into value-free ProviderErrors.
 */
import { readBoundedText, ReplyTooLarge } from "../bounded-read.ts";
import { ProviderError } from "../errors.ts";
import type { TokenSource } from "./auth.ts";
import { CallLevelError } from "./errors.ts";
import { GCP_QUOTA_SHARE } from "./descriptor.ts";
import { parseRetryAfter, sleep } from "../http-retry.ts";

/** One request may take this long before it counts as a timeout. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Throttled requests wait at most this long in all, per request, before PROVIDER_THROTTLED. */
export const THROTTLE_BUDGET_MS = 8_000;
export const THROTTLE_MAX_RETRIES = 3;
/** A 429 without Retry-After: wait this long, doubling. */
export const THROTTLE_BASE_DELAY_MS = 1_000;


/**
 * The metadata-read quota as a token bucket: GCP_QUOTA_SHARE of the quota per minute, refilled
 * evenly, at most a minute's worth saved up. `take` waits for a token up to `deadline`.
 */
export class QuotaBucket {
  private tokens: number;
  private last: number;
  readonly perMinute: number;

  constructor(quotaPerMinute: number, readonly now: () => number = Date.now) {
    this.perMinute = Math.max(1, Math.floor(quotaPerMinute * GCP_QUOTA_SHARE));
    this.tokens = this.perMinute;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.perMinute, this.tokens + ((t - this.last) * this.perMinute) / 60_000);
    this.last = t;
  }

  /** Milliseconds until a token is free (0: now). */
  waitMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 60_000) / this.perMinute);
  }

  /** Uses a token without waiting (a second read for one secret): the bucket may go below zero. */
  spend(): void {
    this.refill();
    this.tokens -= 1;
  }

  /** Takes a token, waiting until `deadline` (on this bucket's clock, `now()`) at most; false when none came in time. */
  async take(deadline: number, signal: AbortSignal): Promise<boolean> {
    for (;;) {
      const wait = this.waitMs();
      if (wait === 0) {
        this.tokens -= 1;
        return true;
      }
      if (this.now() + wait > deadline) return false;
      await sleep(wait, signal);
    }
  }
}

interface GoogleError {
  error?: { code?: number; status?: string; message?: string };
}

export interface ApiOptions {
  endpoint: string;
  /** `provider <name> (gcp)`, for messages. */
  who: string;
  tokens: TokenSource;
}

export interface Reply {
  status: number;
  body: unknown;
}

export class SecretManagerApi {
  private throttledUntil = 0;
  /** Requests sent, by kind (tests, benches, the debug log). */
  readonly calls = { metadata: 0, list: 0, access: 0, throttled: 0 };

  constructor(private readonly options: ApiOptions) {}

  /** GET a version's metadata (`…/versions/N` or `…/versions/latest`). */
  version(path: string, signal: AbortSignal, what: string): Promise<Record<string, unknown>> {
    this.calls.metadata++;
    return this.getJson(path, signal, what);
  }

  /** The newest enabled versions first (Secret Manager lists newest first). */
  enabledVersions(secretPath: string, signal: AbortSignal, what: string): Promise<Record<string, unknown>> {
    this.calls.list++;
    return this.getJson(`${secretPath}/versions?filter=${encodeURIComponent("state:ENABLED")}&pageSize=25`, signal, what);
  }

  /** One secret of the project: proves the token, the network path and the viewer permission. */
  firstSecret(project: string, signal: AbortSignal): Promise<Record<string, unknown>> {
    this.calls.list++;
    return this.getJson(`projects/${project}/secrets?pageSize=1`, signal, "health check");
  }

  /** `…/versions/N:access`: the payload, base64 in `payload.data`. */
  access(versionPath: string, signal: AbortSignal, what: string): Promise<Record<string, unknown>> {
    this.calls.access++;
    return this.getJson(`${versionPath}:access`, signal, what);
  }

  private async getJson(path: string, signal: AbortSignal, what: string): Promise<Record<string, unknown>> {
    const reply = await this.send(path, signal, what);
    const body = reply.body as Record<string, unknown> | undefined;
    if (reply.status === 200) {
      if (body === null || typeof body !== "object" || Array.isArray(body)) {
        throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.options.who}: ${what}: Secret Manager's reply is not a JSON object`);
      }
      return body;
    }
    throw this.statusError(reply, what);
  }

  private statusError(reply: Reply, what: string): ProviderError {
    const { who } = this.options;
    const status = (reply.body as GoogleError | undefined)?.error?.status ?? "";
    if (reply.status === 404) return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: not found`);
    if (reply.status === 403) {
      return new ProviderError("PROVIDER_AUTH", `${who}: ${what}: permission denied (grant roles/secretmanager.viewer to poll, roles/secretmanager.secretAccessor to read values)`);
    }
    if (reply.status === 401) return new CallLevelError("PROVIDER_AUTH", `${who}: Secret Manager refused the access token (HTTP 401)`);
    if (reply.status === 400 && status === "FAILED_PRECONDITION") return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: the version is disabled or destroyed`);
    if (reply.status === 400) return new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: rejected as invalid (${String(status).replace(/[^A-Z_]/g, "").slice(0, 64) || "HTTP 400"})`);
    return new CallLevelError("PROVIDER_UNAVAILABLE", `${who}: ${what}: Secret Manager answered HTTP ${reply.status}${status ? ` ${String(status).replace(/[^A-Z_]/g, "").slice(0, 64)}` : ""}`);
  }

  private async fetchOnce(path: string, token: string, signal: AbortSignal, what: string): Promise<Response> {
    const timed = AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    try {
      return await fetch(`${this.options.endpoint}/v1/${path}`, { headers: { authorization: `Bearer ${token}`, accept: "application/json" }, signal: timed, redirect: "manual" });
    } catch (error) {
      const name = (error as { name?: string })?.name;
      if (signal.aborted) throw new CallLevelError("PROVIDER_TIMEOUT", `${this.options.who}: ${what}: call cancelled`);
      if (name === "TimeoutError" || name === "AbortError") throw new CallLevelError("PROVIDER_TIMEOUT", `${this.options.who}: ${what}: no answer within ${REQUEST_TIMEOUT_MS} ms`);
      const code = (error as { code?: string })?.code;
      throw new CallLevelError("PROVIDER_UNAVAILABLE", `${this.options.who}: cannot reach ${this.options.endpoint}${code ? ` (${code})` : ""}`);
    }
  }

  private async send(path: string, signal: AbortSignal, what: string): Promise<Reply> {
    let waited = 0;
    let refreshed = false;
    for (let retry = 0; ; ) {
      const gate = this.throttledUntil - Date.now();
      if (gate > 0) await sleep(gate, signal).catch(() => Promise.reject(new CallLevelError("PROVIDER_TIMEOUT", `${this.options.who}: ${what}: call cancelled`)));
      const response = await this.fetchOnce(path, await this.options.tokens.token(signal), signal, what);
      if (response.status === 401 && !refreshed) {
        await response.body?.cancel();
        refreshed = true; // the token may have been revoked or expired early: get a new one, once
        await this.options.tokens.token(signal, true);
        continue;
      }
      if (response.status !== 429) {
        const body = await readJson(response).catch((error: unknown) => {
          if (error instanceof ReplyTooLarge) throw new CallLevelError("PROVIDER_UNAVAILABLE", `${this.options.who}: ${what}: the reply is over ${MAX_REPLY_BYTES} bytes`);
          throw error;
        });
        return { status: response.status, body };
      }
      await response.body?.cancel();
      this.calls.throttled++;
      const delay = parseRetryAfter(response.headers.get("retry-after")) ?? THROTTLE_BASE_DELAY_MS * 2 ** retry;
      if (retry >= THROTTLE_MAX_RETRIES || waited + delay > THROTTLE_BUDGET_MS) {
        throw new CallLevelError("PROVIDER_THROTTLED", `${this.options.who}: Secret Manager is throttling requests (429 RESOURCE_EXHAUSTED); retry in ${Math.ceil(delay / 1000)} s`, {
          retryAfterMs: Math.ceil(delay),
        });
      }
      waited += delay;
      retry++;
      this.throttledUntil = Math.max(this.throttledUntil, Date.now() + delay);
    }
  }
}

/** A list page (25,000 secrets at most) is a few MiB; a reply past this is not Secret Manager's. */
const MAX_REPLY_BYTES = 32 * 1024 * 1024;

async function readJson(response: Response): Promise<unknown> {
  const text = await readBoundedText(response, MAX_REPLY_BYTES);
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
