/**
 * Change detection by push: for each provider with `events`, the agent asks the provider process
 * to long-poll the cloud's change-event queue (the process holds the credentials; the agent never
 * does). A message only names secrets: their fingerprints are checked (metadata, as a poll does)
 * and a real change goes down the path every trigger uses, with cause `event`. Polling goes on
 * as the safety net.
 *
 * - Coalescing: after a message arrives the queue is drained (no wait) for up to DRAIN_MAX_MS or
 *   DRAIN_MAX_MESSAGES (an empty read ends it at once), then each named secret is checked once: 1,000 duplicates make one check.
 * - A message is deleted only after it was handled (its check answered); if the check failed it
 *   stays and comes back after the queue's visibility timeout.
 * - Poison (malformed, too large, not a secret change) and names dso.yaml does not declare are
 *   counted and deleted at once, so they never block the queue.
 * - Latency: the provider keeps a spare fetch child ready while its consumer runs (no child start
 *   on the path of a change), and an `event` wave skips the poll debounce (wave-scheduler.ts).
 * - Outage: one warning, `dso_change_event_queue_up 0`, retries backing off to OUTAGE_MAX_BACKOFF_MS;
 *   polling is untouched. One info line when the queue answers again.
 */
import type { ProviderConfig } from "../config/types.ts";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { MAX_EVENT_MESSAGES, MAX_EVENT_WAIT_SECONDS, type EventMessage } from "../rpc/protocol.ts";
import { mapLimit } from "../util/map-limit.ts";
import type { ProviderProcess } from "../rpc/supervisor.ts";
import type { SecretStore } from "../secrets/store.ts";
import { pollProvider, type FingerprintSource } from "./provider-poller.ts";

export const DRAIN_MAX_MS = 3000;
export const DRAIN_MAX_MESSAGES = 2000;
/** `events_done` calls in flight at once when a burst is deleted. */
const DELETE_CONCURRENCY = 4;
export const OUTAGE_FIRST_BACKOFF_MS = 1000;
export const OUTAGE_MAX_BACKOFF_MS = 60_000;
/** Seconds kept free between the long poll and the provider call timeout (which kills the process). */
const CALL_MARGIN_S = 5;

/** The provider calls the consumer makes (a ProviderProcess has them all). */
export interface ChangeEventSource extends FingerprintSource {
  call: ProviderProcess["call"];
  /** Keep a spare fetch child ready, so a change's wave does not wait for a child's start. */
  keepSpareFetchReady?(): void;
}

export interface EventQueueDeps {
  provider: string;
  /** The provider's current process (replaced on a config change). */
  source: () => ChangeEventSource | undefined;
  store: SecretStore;
  log: FieldLogger;
  /** The provider call timeout: the long poll stays well inside it. */
  callTimeoutMs: number;
  /** Checked secrets that changed, were seen first or recovered: deliver (cause `event`). */
  onChanged: (names: string[]) => void;
  /** What became of each message (metrics): checked, undeclared, a problem, queue_error. */
  counted?: (outcome: string, count: number) => void;
  queueUp?: (up: boolean) => void;
  /** Tests: how long to wait between failed reads. */
  backoffMs?: (failedInARow: number) => number;
}

/** Does `named` (as the cloud's event says it) mean the declared secret `declared`? */
export function namesSecret(declared: string, named: string): boolean {
  if (declared === named) return true;
  // Key Vault names: case-insensitive, and the Go DSO's `_` stands for `-`.
  return declared.toLowerCase().replaceAll("_", "-") === named.toLowerCase();
}

/** The declared secrets of `provider` that the messages name; counts what was dropped. */
export function secretsNamed(messages: readonly EventMessage[], declared: readonly string[], count: (outcome: string) => void): Set<string> {
  const out = new Set<string>();
  for (const message of messages) {
    if (message.problem) {
      count(message.problem);
      continue;
    }
    const matched = declared.filter((name) => message.secrets.some((named) => namesSecret(name, named)));
    count(matched.length > 0 ? "checked" : "undeclared");
    for (const name of matched) out.add(name);
  }
  return out;
}

export class ChangeEventConsumer {
  private readonly controller = new AbortController();
  private running?: Promise<void>;
  private failedInARow = 0;

  constructor(private readonly deps: EventQueueDeps) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }

  private get waitSeconds(): number {
    return Math.max(0, Math.min(MAX_EVENT_WAIT_SECONDS, Math.floor(this.deps.callTimeoutMs / 1000) - CALL_MARGIN_S));
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      const source = this.deps.source();
      if (!source) {
        await sleep(OUTAGE_FIRST_BACKOFF_MS, signal);
        continue;
      }
      try {
        const messages = await this.receive(source, this.waitSeconds, signal);
        this.queueAnswered();
        // Only once the queue answers: a provider that cannot read one (or is down) keeps no spare.
        source.keepSpareFetchReady?.();
        if (messages.length === 0) {
          if (this.waitSeconds === 0) await sleep(OUTAGE_FIRST_BACKOFF_MS, signal);
          continue;
        }
        await this.handle(source, await this.drain(source, messages, signal), signal);
      } catch (error) {
        if (signal.aborted) return;
        this.queueFailed(error);
        await sleep(this.backoff(), signal);
      }
    }
  }

  private async receive(source: ChangeEventSource, waitSeconds: number, signal: AbortSignal): Promise<EventMessage[]> {
    return (await source.call("events", { waitSeconds }, signal)).messages;
  }

  /** Reads on without waiting while messages keep coming, so a burst becomes one check per secret. */
  private async drain(source: ChangeEventSource, first: EventMessage[], signal: AbortSignal): Promise<EventMessage[]> {
    const all = [...first];
    const until = Date.now() + DRAIN_MAX_MS;
    while (all.length < DRAIN_MAX_MESSAGES && Date.now() < until && !signal.aborted) {
      const more = await this.receive(source, 0, signal);
      if (more.length === 0) break;
      all.push(...more);
    }
    return all;
  }

  private async handle(source: ChangeEventSource, messages: EventMessage[], signal: AbortSignal): Promise<void> {
    const { provider, store, log } = this.deps;
    const counts = new Map<string, number>();
    const declared = store.forProvider(provider).map((s) => s.spec.name);
    const names = secretsNamed(messages, declared, (outcome) => counts.set(outcome, (counts.get(outcome) ?? 0) + 1));
    for (const [outcome, count] of counts) this.deps.counted?.(outcome, count);
    const dropped = messages.length - (counts.get("checked") ?? 0);
    if (dropped > 0) log.debug("change events dropped", { provider, dropped, undeclared: counts.get("undeclared") ?? 0 });
    let handled = true;
    if (names.size > 0) {
      const outcome = await pollProvider(provider, source, store, signal, names);
      // Not answered: keep the messages; they come back after the queue's visibility timeout.
      handled = !outcome.failed;
      const touched = [...outcome.changed, ...outcome.seeded, ...outcome.recovered];
      if (outcome.changed.length) log.info("secrets changed at the provider (change event)", { provider, secrets: outcome.changed.join(",") });
      if (touched.length) this.deps.onChanged(touched);
    }
    const receipts = messages.filter((m) => handled || m.problem !== undefined || !m.secrets.some((n) => declared.some((d) => namesSecret(d, n)))).map((m) => m.receipt);
    await this.deleteMessages(source, receipts, signal);
  }

  private async deleteMessages(source: ChangeEventSource, receipts: string[], signal: AbortSignal): Promise<void> {
    const batches: string[][] = [];
    for (let i = 0; i < receipts.length; i += MAX_EVENT_MESSAGES) batches.push(receipts.slice(i, i + MAX_EVENT_MESSAGES));
    await mapLimit(batches, DELETE_CONCURRENCY, (batch) => source.call("events_done", { receipts: batch }, signal));
  }

  private queueAnswered(): void {
    if (this.failedInARow > 0) this.deps.log.info("change-event queue answers again", { provider: this.deps.provider });
    if (this.failedInARow > 0 || !this.upReported) this.deps.queueUp?.(true);
    this.upReported = true;
    this.failedInARow = 0;
  }

  private upReported = false;

  private queueFailed(error: unknown): void {
    this.failedInARow++;
    this.deps.counted?.("queue_error", 1);
    if (this.failedInARow === 1) {
      this.deps.queueUp?.(false);
      this.deps.log.warn("change-event queue unreachable: polling continues as before", { provider: this.deps.provider, error: describeError(error) });
    }
  }

  private backoff(): number {
    if (this.deps.backoffMs) return this.deps.backoffMs(this.failedInARow);
    return Math.min(OUTAGE_MAX_BACKOFF_MS, OUTAGE_FIRST_BACKOFF_MS * 2 ** (this.failedInARow - 1));
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** One consumer per provider with `events`, kept in step with the config (reloads). */
export class ChangeEventConsumers {
  private readonly consumers = new Map<string, { key: string; consumer: ChangeEventConsumer }>();

  constructor(private readonly build: (provider: ProviderConfig) => ChangeEventConsumer) {}

  sync(providers: Record<string, ProviderConfig>): void {
    for (const [name, entry] of this.consumers) {
      const spec = providers[name];
      if (spec?.events && JSON.stringify(spec) === entry.key) continue;
      void entry.consumer.stop();
      this.consumers.delete(name);
    }
    for (const spec of Object.values(providers)) {
      if (!spec.events || this.consumers.has(spec.name)) continue;
      const consumer = this.build(spec);
      this.consumers.set(spec.name, { key: JSON.stringify(spec), consumer });
      consumer.start();
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.consumers.values()].map((entry) => entry.consumer.stop()));
    this.consumers.clear();
  }
}
