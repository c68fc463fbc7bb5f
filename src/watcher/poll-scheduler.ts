/**
 * When each provider is polled: its process kept or replaced to match the config, a first poll
 * right away, then one every `agent.watch.polling_interval` (jittered), failed polls retried
 * after `retry.backoff` (doubling) up to `retry.attempts`, and a webhook notification polls now.
 * What a poll found goes to `onChanged`; the poll itself is provider-poller.ts.
 *
 * Webhook notifications are coalesced: one poll of a provider runs at a time; a notification
 * while one runs asks for one more after it (the change may have come after it read), a
 * notification while one is queued joins it, and webhook polls of a provider start at least
 * WEBHOOK_POLL_GAP_MS apart. 300 calls in a second make two or three polls, not 300.
 *
 * Time comes from `deps.clock` (util/clock.ts; the real one by default): tests move a manual one.
 */
import type { ProviderConfig } from "../config/types.ts";
import { describeError, DsoError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import type { ProviderProcess, ProviderStatus } from "../rpc/supervisor.ts";
import type { SecretStore } from "../secrets/store.ts";
import { jittered, nextPollDelay, pollProvider } from "./provider-poller.ts";
import type { Notification } from "./webhook.ts";
import { type Clock, systemClock, type TimerHandle } from "../util/clock.ts";

/** Webhook-triggered polls of one provider start at least this far apart. */
export const WEBHOOK_POLL_GAP_MS = 1000;

export interface ProviderRuntime {
  spec: ProviderConfig;
  process: ProviderProcess;
  lastPoll?: { at: string; changed: number; errors: number };
  nextPollAt?: number;
  /** Failed polls in a row; the next one comes after `retry.backoff` (doubling) up to `retry.attempts`. */
  failedPolls: number;
  /** The next poll was asked for by a webhook notification (for the audit trail). */
  webhookPending?: boolean;
  /** A poll is running now. */
  polling?: boolean;
  /** A webhook asked for a poll that has not started yet (queued, or to follow the running one). */
  webhookQueued?: boolean;
  /** When the last webhook-triggered poll started (ms). */
  lastWebhookPollAt?: number;
  timer?: TimerHandle;
}

export interface PollSchedulerDeps {
  store: SecretStore;
  log: FieldLogger;
  /** `agent.watch.polling_interval`, read at every poll (a config reload changes it). */
  intervalMs: () => number;
  /** Starts the process of a provider instance. */
  startProcess: (name: string, spec: ProviderConfig) => ProviderProcess;
  /** A poll ended: the secrets it answered for, or what went wrong (metrics). */
  pollFinished: (p: { provider: string; secrets?: readonly string[]; error?: unknown }) => void;
  /** Secrets whose containers must be looked at (changed, seeded or recovered). */
  onChanged: (names: string[], trigger: "poll" | "webhook" | "event") => void;
  /** The clock polls are scheduled on; the real one unless a test gives a manual one. */
  clock?: Clock;
}

function sameProvider(a: ProviderConfig, b: ProviderConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class PollScheduler {
  readonly providers = new Map<string, ProviderRuntime>();
  private halted = false;

  private readonly clock: Clock;

  constructor(private readonly deps: PollSchedulerDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  process(name: string): ProviderProcess | undefined {
    return this.providers.get(name)?.process;
  }

  /** Start, keep or replace provider processes to match the config. */
  sync(providers: Record<string, ProviderConfig>): void {
    for (const [name, runtime] of this.providers) {
      const spec = providers[name];
      if (spec && sameProvider(spec, runtime.spec)) continue;
      this.clock.clearTimeout(runtime.timer);
      void runtime.process.stop();
      this.providers.delete(name);
    }
    for (const [name, spec] of Object.entries(providers)) {
      if (this.providers.has(name)) continue;
      const runtime: ProviderRuntime = { spec, process: this.deps.startProcess(name, spec), failedPolls: 0 };
      this.providers.set(name, runtime);
      this.schedule(runtime, 0);
    }
  }

  /** A webhook notification: poll the named secret's provider (or the named one, or all) now. */
  pollNow(notification: Notification): boolean {
    const providerName = notification.secret_name ? this.deps.store.get(notification.secret_name)?.spec.provider : notification.provider;
    const named = notification.secret_name !== undefined || notification.provider !== undefined;
    const targets = named ? [this.providers.get(providerName ?? "")].filter((r) => r !== undefined) : [...this.providers.values()];
    const joined = targets.filter((runtime) => runtime.webhookQueued);
    for (const runtime of targets) this.queueWebhookPoll(runtime);
    const providers = targets.map((r) => r.spec.name).join(",") || "none";
    if (joined.length === targets.length && targets.length > 0) this.deps.log.debug("webhook notification: joins the poll already queued", { providers });
    else this.deps.log.info("webhook notification: polling now", { providers });
    return targets.length > 0;
  }

  /** One webhook poll queued per provider: now, after the running one, or WEBHOOK_POLL_GAP_MS after the last. */
  private queueWebhookPoll(runtime: ProviderRuntime): void {
    runtime.webhookPending = true;
    if (runtime.webhookQueued) return;
    runtime.webhookQueued = true;
    // A running poll schedules the queued one when it ends.
    if (!runtime.polling) this.schedule(runtime, this.webhookDelay(runtime));
  }

  private webhookDelay(runtime: ProviderRuntime): number {
    return runtime.lastWebhookPollAt === undefined ? 0 : Math.max(0, runtime.lastWebhookPollAt + WEBHOOK_POLL_GAP_MS - this.clock.now());
  }

  /** Why a secret has no fingerprint yet: its provider's first poll, and when it comes. */
  pendingReason(secret: string): string {
    const provider = this.deps.store.get(secret)?.spec.provider;
    const next = provider ? this.providers.get(provider)?.nextPollAt : undefined;
    if (next === undefined) return "first poll";
    const seconds = Math.max(0, Math.round((next - this.clock.now()) / 1000));
    return `first poll in ${seconds >= 120 ? `${Math.round(seconds / 60)}m` : `${seconds}s`}`;
  }

  /** Each provider's process status and its last poll (`dso status`). */
  statuses(): Array<ProviderStatus & { lastPoll?: ProviderRuntime["lastPoll"] }> {
    return [...this.providers.values()].map((rt) => ({ ...rt.process.getStatus(), lastPoll: rt.lastPoll }));
  }

  /** No more polls (SIGTERM); the processes keep serving fetches until stopProcesses(). */
  halt(): void {
    this.halted = true;
    for (const rt of this.providers.values()) this.clock.clearTimeout(rt.timer);
  }

  async stopProcesses(): Promise<void> {
    await Promise.all([...this.providers.values()].map((rt) => rt.process.stop()));
  }

  private schedule(runtime: ProviderRuntime, delayMs: number): void {
    this.clock.clearTimeout(runtime.timer);
    runtime.nextPollAt = this.clock.now() + delayMs;
    runtime.timer = this.clock.setTimeout(() => void this.pollOnce(runtime), delayMs);
  }

  private async pollOnce(runtime: ProviderRuntime): Promise<void> {
    if (this.halted || this.providers.get(runtime.spec.name) !== runtime || runtime.polling) return;
    const { store, log } = this.deps;
    let failed = false;
    runtime.polling = true;
    // A webhook during this poll marks the next one.
    const trigger = runtime.webhookPending ? "webhook" : "poll";
    runtime.webhookPending = false;
    if (runtime.webhookQueued) {
      runtime.webhookQueued = false;
      runtime.lastWebhookPollAt = this.clock.now();
    }
    try {
      const outcome = await pollProvider(runtime.spec.name, runtime.process, store);
      failed = outcome.failed;
      const answered = store.forProvider(runtime.spec.name).map((s) => s.spec.name).filter((n) => !outcome.errors.some((e) => e.secret === n));
      this.deps.pollFinished({ provider: runtime.spec.name, secrets: answered, ...(outcome.failed ? { error: new DsoError("PROVIDER_UNAVAILABLE", outcome.errors[0]?.message ?? "poll failed") } : {}) });
      runtime.lastPoll = { at: new Date().toISOString(), changed: outcome.changed.length, errors: outcome.errors.length };
      if (outcome.errors.length) {
        log.warn("poll found stale secrets", { provider: runtime.spec.name, stale: outcome.errors.map((e) => e.secret).join(",") });
      }
      if (outcome.changed.length) log.info("secrets changed at the provider", { provider: runtime.spec.name, secrets: outcome.changed.join(",") });
      // Seeded too: containers may hold another version than the one seen first (changed while we were down).
      // Recovered too: a fetch that failed (provider crashed, timed out) left containers behind.
      const touched = [...outcome.changed, ...outcome.seeded, ...outcome.recovered];
      if (touched.length) this.deps.onChanged(touched, trigger);
    } catch (error) {
      failed = true;
      this.deps.pollFinished({ provider: runtime.spec.name, error });
      log.error("poll failed", { provider: runtime.spec.name, error: describeError(error) });
    } finally {
      runtime.polling = false;
      const delay = this.nextDelay(runtime, failed);
      // A webhook that came while this poll ran gets its own poll (no later than the regular one).
      if (!this.halted) this.schedule(runtime, runtime.webhookQueued ? Math.min(delay, this.webhookDelay(runtime)) : delay);
    }
  }

  private nextDelay(runtime: ProviderRuntime, failed: boolean): number {
    runtime.failedPolls = failed ? runtime.failedPolls + 1 : 0;
    const next = nextPollDelay(runtime.failedPolls, runtime.spec.retry, jittered(this.deps.intervalMs()));
    if (runtime.failedPolls >= runtime.spec.retry.attempts) runtime.failedPolls = 0;
    return next;
  }
}
