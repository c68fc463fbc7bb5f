/**
 * The `gcp` provider: Google Cloud Secret Manager over its REST API (no gRPC SDK: google-gax
 * fails under Bun). Polling reads version metadata only: the fingerprint is the enabled version
 * in use (`versions/latest` when it is enabled, else the newest enabled version); a fetch
 * resolves that version number the same way and reads `versions/N:access`, never `latest`, so
 * the value and its fingerprint belong together. Metadata reads are budgeted against the
 * project's quota (QuotaBucket): a poll that would exceed it checks the least recently checked
 * secrets first and reports the others with the fingerprint last seen (or throttled, if never
 * seen), so every secret is checked within a few polls and the quota is never overrun by DSO.
 */
import { mapLimit } from "../../src/util/map-limit.ts";
import { ProviderError, toRpcError } from "../errors.ts";
import type { ConfigureParams, FetchItem, FingerprintItem, ProviderClient, ProviderContext, ProviderFactory, SecretRef } from "../types.ts";
import { refKey } from "../../src/rpc/protocol.ts";
import { tokenSource, type TokenSource } from "./auth.ts";
import { QuotaBucket, SecretManagerApi } from "./api.ts";
import { CallLevelError } from "./errors.ts";
import { parseGcpSettings, type GcpSettings } from "./config.ts";
import { createPubSubEvents } from "./events.ts";
import { payloadValue, printable, secretTarget, versionFingerprint, versionNumber, type SecretTarget } from "./secrets.ts";

/** Requests in flight at once per call. */
export const PARALLEL_REQUESTS = 8;
/** How long a poll may wait for quota before it answers with what it has (the agent's call timeout is 30 s). */
export const FINGERPRINT_QUOTA_WAIT_MS = 15_000;

interface Resolved {
  version: number;
  fingerprint: string;
}

export interface GcpClient extends ProviderClient {
  readonly api: SecretManagerApi;
  readonly quota: QuotaBucket;
}

export interface GcpClientOptions {
  tokens?: TokenSource;
  quota?: QuotaBucket;
  /** How long a poll waits for quota (FINGERPRINT_QUOTA_WAIT_MS). */
  quotaWaitMs?: number;
}

export function createGcpClient(settings: GcpSettings, ctx: ProviderContext, options: GcpClientOptions = {}): GcpClient {
  const who = `provider ${settings.name} (gcp)`;
  const api = new SecretManagerApi({ endpoint: settings.endpoint, who, tokens: options.tokens ?? tokenSource(settings.auth, who) });
  const quota = options.quota ?? new QuotaBucket(settings.quotaPerMinute);
  const quotaWaitMs = options.quotaWaitMs ?? FINGERPRINT_QUOTA_WAIT_MS;
  /** Per ref: the fingerprint last seen and when it was checked. */
  const seen = new Map<string, { fingerprint: string; checkedAt: number }>();
  const describe = (ref: SecretRef) => `secret "${printable(ref.name)}"`;

  /** The enabled version a ref stands for, from metadata alone. */
  async function resolveVersion(target: SecretTarget, signal: AbortSignal, what: string): Promise<Resolved> {
    const malformed = () => new ProviderError("PROVIDER_UNAVAILABLE", `${who}: ${what}: Secret Manager's reply has no version name or state`);
    if (target.version !== undefined) {
      const meta = await api.version(`${target.path}/versions/${target.version}`, signal, what);
      if (versionNumber(meta.name) !== target.version || typeof meta.state !== "string") throw malformed();
      if (meta.state !== "ENABLED") throw new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: version ${target.version} is ${meta.state.toLowerCase().replace(/[^a-z_]/g, "")}`);
      return { version: target.version, fingerprint: versionFingerprint(target.version, meta.createTime) };
    }
    const latest = await api.version(`${target.path}/versions/latest`, signal, what);
    const number = versionNumber(latest.name);
    if (number === undefined || typeof latest.state !== "string") throw malformed();
    if (latest.state === "ENABLED") return { version: number, fingerprint: versionFingerprint(number, latest.createTime) };
    // `latest` is the newest created version even when disabled or destroyed: use the newest enabled one.
    quota.spend();
    const list = await api.enabledVersions(target.path, signal, what);
    if (list.versions !== undefined && !Array.isArray(list.versions)) throw malformed();
    let best: Resolved | undefined;
    for (const v of (list.versions ?? []) as Array<Record<string, unknown>>) {
      const n = versionNumber(v?.name);
      if (n === undefined || v.state !== "ENABLED" || (best && best.version >= n)) continue;
      best = { version: n, fingerprint: versionFingerprint(n, v.createTime) };
    }
    if (!best) throw new ProviderError("SECRET_NOT_FOUND", `${who}: ${what}: no enabled version (the newest is ${latest.state.toLowerCase().replace(/[^a-z_]/g, "")})`);
    return best;
  }

  /** Runs `one` per ref, in order; a call-level failure stops the batch and rejects the call. */
  async function eachRef<T>(refs: SecretRef[], signal: AbortSignal, one: (ref: SecretRef, signal: AbortSignal) => Promise<T>, inBand: (ref: SecretRef, error: unknown) => T): Promise<T[]> {
    const batch = new AbortController();
    const batchSignal = AbortSignal.any([signal, batch.signal]);
    let fatal: unknown;
    const results = await mapLimit(refs, PARALLEL_REQUESTS, async (ref) => {
      if (fatal !== undefined) return undefined as T;
      try {
        return await one(ref, batchSignal);
      } catch (error) {
        if (error instanceof CallLevelError || !(error instanceof ProviderError)) {
          fatal ??= error;
          batch.abort();
          return undefined as T;
        }
        return inBand(ref, error);
      }
    });
    if (fatal !== undefined) throw fatal;
    return results;
  }

  const inBand = (ref: SecretRef, error: unknown) => ({ ref, error: toRpcError(error, settings.name) });

  return {
    api,
    quota,
    async fingerprint(refs, signal) {
      const deadline = quota.now() + quotaWaitMs;
      // Least recently checked first, so a poll cut short by the quota starts there next time.
      const order = refs.map((ref, index) => ({ ref, index, checkedAt: seen.get(refKey(ref))?.checkedAt ?? 0 })).sort((a, b) => a.checkedAt - b.checkedAt);
      const answers = await eachRef<FingerprintItem>(order.map((o) => o.ref), signal, async (ref, s) => {
        const key = refKey(ref);
        const target = secretTarget(ref, settings.project, who);
        const granted = await quota.take(deadline, s).catch(() => {
          throw new CallLevelError("PROVIDER_TIMEOUT", `${who}: poll cancelled while waiting for quota`);
        });
        if (!granted) {
          const last = seen.get(key);
          if (last) return { ref, fingerprint: last.fingerprint };
          const wait = quota.waitMs();
          return { ref, error: { code: "PROVIDER_THROTTLED", message: `${who}: ${describe(ref)}: not checked yet, the project's metadata quota (${settings.quotaPerMinute}/min) is used up`, retryAfterMs: wait } };
        }
        const { fingerprint } = await resolveVersion(target, s, describe(ref));
        seen.set(key, { fingerprint, checkedAt: Date.now() });
        return { ref, fingerprint };
      }, inBand);
      const items = new Array<FingerprintItem>(refs.length);
      order.forEach((o, i) => (items[o.index] = answers[i]!));
      ctx.log.debug("gcp poll", { refs: refs.length, ...api.calls, quotaPerMinute: quota.perMinute });
      return items;
    },
    async fetch(refs, signal) {
      const once = new Map<string, Promise<Omit<FetchItem, "ref">>>();
      return eachRef<FetchItem>(refs, signal, async (ref, s) => {
        const key = refKey(ref);
        if (!once.has(key)) {
          once.set(key, (async () => {
            const what = describe(ref);
            const target = secretTarget(ref, settings.project, who);
            quota.spend();
            const { version, fingerprint } = await resolveVersion(target, s, what);
            // Pinned to the number just resolved: a version added in between is the next poll's change.
            const reply = await api.access(`${target.path}/versions/${version}`, s, what);
            if (versionNumber(reply.name) !== version) throw new ProviderError("PROVIDER_UNAVAILABLE", `${who}: ${what}: Secret Manager answered for another version`);
            return { fingerprint, version: String(version), value: payloadValue(reply, `${who}: ${what}`) };
          })());
        }
        return { ref, ...(await once.get(key)!) };
      }, inBand);
    },
    async health(signal) {
      try {
        await api.firstSecret(settings.project, signal);
        return { ok: true };
      } catch (error) {
        return { ok: false, message: toRpcError(error, settings.name).message };
      }
    },
    async close() {},
  };
}

export const gcpProvider: ProviderFactory = {
  type: "gcp",
  async create(params: ConfigureParams, ctx: ProviderContext): Promise<ProviderClient> {
    const settings = parseGcpSettings(params, ctx.env);
    const who = `provider ${settings.name} (gcp)`;
    // One token for Secret Manager and Pub/Sub: the change-event subscription is read with the same identity.
    const tokens = tokenSource(settings.auth, who);
    const client = createGcpClient(settings, ctx, { tokens });
    if (!params.events) return client;
    if (!/^projects\/[^/]+\/subscriptions\/[^/]+$/.test(params.events.queue)) {
      throw new ProviderError("CONFIG_INVALID", `providers.${settings.name}.events.subscription: must be projects/<project>/subscriptions/<subscription>`);
    }
    const events = createPubSubEvents({ endpoint: settings.pubsubEndpoint, subscription: params.events.queue, project: settings.project, tokens, who });
    return Object.assign(client, { events });
  },
};
