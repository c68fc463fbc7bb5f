/**
 * Keeps a Vault token usable: logs in (AppRole) or takes the configured token, looks it up, and
 * renews it at RENEW_AT_FRACTION of its TTL. When the token cannot be renewed any further and
 * AppRole is configured, it logs in again before the token expires. Timers are unref'd so they
 * never hold the process open, and close() stops them. A borrowed token (a fetch process's, lent by
 * the long-lived process) is used as it is: no lookup, no renewal, no login; its owner keeps it alive.
 */
import type NodeVault from "node-vault";
import { ProviderError } from "../errors.ts";
import type { ProviderLogger } from "../types.ts";
import type { VaultSettings } from "./config.ts";
import { toVaultError, vaultStatus } from "./errors.ts";

/** Renew (or log in again) when this fraction of the token's TTL has passed. */
export const RENEW_AT_FRACTION = 2 / 3;
/** Never schedule token work sooner than this: a tiny TTL must not become a busy loop. */
export const MIN_RENEW_DELAY_MS = 1_000;
/** After a failed renewal or login, try again after this long (while the token still lives). */
export const RENEW_RETRY_DELAY_MS = 5_000;

interface TokenInfo {
  ttlSeconds: number;
  renewable: boolean;
}

export class VaultSession {
  private starting?: Promise<void>;
  private started = false;
  private timer?: ReturnType<typeof setTimeout>;
  private expiresAtMs?: number;
  private relogin?: Promise<void>;
  private readonly closing = new AbortController();

  constructor(
    private readonly client: NodeVault.client,
    private readonly settings: VaultSettings,
    private readonly log: ProviderLogger,
  ) {}

  /** Resolves once a token has been checked; a failure is not cached, so the next call tries again. */
  async ready(signal: AbortSignal): Promise<void> {
    if (this.settings.auth.method === "borrowed") return;
    if (this.started && !this.expired()) return;
    if (this.started && this.settings.auth.method === "approle") return this.loginAgain(signal);
    this.starting ??= this.start(signal).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** Health: reachability and a valid token, with one lookup (the first one is the start itself). */
  async check(signal: AbortSignal): Promise<void> {
    if (!this.started || this.expired()) return this.ready(signal);
    await this.lookup(signal);
  }

  async lookup(signal: AbortSignal): Promise<TokenInfo> {
    let response: { data?: { ttl?: number; renewable?: boolean } };
    try {
      response = await this.client.tokenLookupSelf({ requestOptions: { signal } });
    } catch (error) {
      if (vaultStatus(error) === 403 || vaultStatus(error) === 401) {
        throw new ProviderError("PROVIDER_AUTH", `${this.settings.label}: the Vault token is invalid or expired (token lookup was denied)`);
      }
      throw toVaultError(error, this.settings.label, "token lookup");
    }
    // A 200 that is not Vault's JSON (a proxy's page) arrives as undefined: the service's fault, typed.
    if (!response || typeof response !== "object") throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.settings.label}: token lookup: the reply is not Vault's JSON`);
    return { ttlSeconds: Number(response.data?.ttl ?? 0), renewable: response.data?.renewable === true };
  }

  close(): void {
    this.closing.abort();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private expired(): boolean {
    return this.expiresAtMs !== undefined && Date.now() >= this.expiresAtMs;
  }

  private async start(signal: AbortSignal): Promise<void> {
    if (this.settings.auth.method === "approle") await this.login(signal);
    const info = await this.lookup(signal);
    this.started = true;
    this.schedule(info);
  }

  private async login(signal: AbortSignal): Promise<TokenInfo> {
    const auth = this.settings.auth;
    if (auth.method !== "approle") throw new Error("login without approle");
    try {
      // approleLogin is a node-vault "token source": it stores the new token on the client.
      const response = await this.client.approleLogin({
        mount_point: auth.mount,
        role_id: auth.roleId,
        ...(auth.secretId ? { secret_id: auth.secretId } : {}),
        requestOptions: { signal },
      });
      const ttlSeconds = Number(response?.auth?.lease_duration ?? 0);
      this.log.info("logged in to Vault with AppRole", { ttlSeconds });
      return { ttlSeconds, renewable: response?.auth?.renewable === true };
    } catch (error) {
      const status = vaultStatus(error);
      if (status === 400 || status === 401 || status === 403) {
        throw new ProviderError("PROVIDER_AUTH", `${this.settings.label}: AppRole login at auth/${auth.mount} was rejected (check role_id and secret_id)`);
      }
      throw toVaultError(error, this.settings.label, "AppRole login");
    }
  }

  private loginAgain(signal: AbortSignal): Promise<void> {
    this.relogin ??= this.login(signal)
      .then((info) => this.schedule(info))
      .finally(() => {
        this.relogin = undefined;
      });
    return this.relogin;
  }

  private schedule(info: TokenInfo, previousTtlSeconds?: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (info.ttlSeconds <= 0) {
      this.expiresAtMs = undefined; // a token without TTL (root, periodic without period) never expires
      return;
    }
    this.expiresAtMs = Date.now() + info.ttlSeconds * 1000;
    const delay = Math.max(MIN_RENEW_DELAY_MS, info.ttlSeconds * 1000 * RENEW_AT_FRACTION);
    // A renewal that came back shorter than before hit the token's max TTL: renewing again only shrinks it.
    const cappedByMaxTtl = previousTtlSeconds !== undefined && info.ttlSeconds < previousTtlSeconds;
    if (info.renewable && !cappedByMaxTtl) return this.later(delay, () => this.renew(info.ttlSeconds));
    if (this.settings.auth.method === "approle") return this.later(delay, () => this.backgroundLogin());
    this.log.warn("the Vault token is not renewable and will expire; renew it or use AppRole", { ttlSeconds: info.ttlSeconds });
  }

  private later(delayMs: number, task: () => Promise<void>): void {
    if (this.closing.signal.aborted) return;
    this.timer = setTimeout(() => void task(), delayMs);
    this.timer.unref?.();
  }

  private async renew(previousTtlSeconds: number): Promise<void> {
    try {
      const response = await this.client.tokenRenewSelf({ requestOptions: { signal: this.closing.signal } });
      const ttlSeconds = Number(response?.auth?.lease_duration ?? 0);
      this.log.debug("renewed the Vault token", { ttlSeconds });
      this.schedule({ ttlSeconds, renewable: response?.auth?.renewable !== false }, previousTtlSeconds);
    } catch (error) {
      if (this.closing.signal.aborted) return;
      const reason = toVaultError(error, this.settings.label, "token renewal");
      this.log.warn("Vault token renewal failed", { code: reason.rpcCode });
      if (this.settings.auth.method === "approle") return this.backgroundLogin();
      this.retryWhileAlive(() => this.renew(previousTtlSeconds));
    }
  }

  private async backgroundLogin(): Promise<void> {
    try {
      await this.loginAgain(this.closing.signal);
    } catch (error) {
      if (this.closing.signal.aborted) return;
      const reason = toVaultError(error, this.settings.label, "AppRole login");
      this.log.warn("Vault AppRole login failed; will retry", { code: reason.rpcCode });
      this.retryWhileAlive(() => this.backgroundLogin());
    }
  }

  /** Once the token has expired, background retries stop: the next call logs in (AppRole) or fails PROVIDER_AUTH. */
  private retryWhileAlive(task: () => Promise<void>): void {
    const remaining = this.expiresAtMs === undefined ? Infinity : this.expiresAtMs - Date.now();
    if (remaining <= MIN_RENEW_DELAY_MS) return;
    this.later(Math.min(RENEW_RETRY_DELAY_MS, Math.max(MIN_RENEW_DELAY_MS, remaining / 2)), task);
  }
}
