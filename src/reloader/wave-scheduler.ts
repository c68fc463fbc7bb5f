/**
 * When waves run: changes of secrets closer together than DEBOUNCE_MS become one wave over the
 * containers using them (at most DEBOUNCE_MAX_MS after the first), container starts closer
 * together than START_BATCH_MS one wave over those containers. A change event (cause `event`)
 * skips the debounce: the event consumer already drained its queue into one check per secret,
 * so waiting would only add latency (issue 23: p95 change → file < 500 ms); events reported in
 * the same tick still make one wave. Keeps the running waves, so a SIGTERM (or a test) can wait
 * for them.
 */
import type { AuditTrigger } from "../audit/audit-log.ts";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import { Quiescence } from "./quiescence.ts";

/** Changes closer together than this become one wave; a wave waits at most MAX after the first. */
export const DEBOUNCE_MS = 300;
export const DEBOUNCE_MAX_MS = 2_000;
/** Container starts closer together than this are reconciled in one wave (one fetch). */
export const START_BATCH_MS = 50;
/** Change events reported in the same tick are one wave; no wait beyond that (already coalesced). */
export const EVENT_BATCH_MS = 0;

export interface WaveRunners {
  /** A wave over the containers using these secrets. */
  secrets(names: Set<string>, trigger: AuditTrigger): Promise<unknown>;
  /** A wave over these containers. */
  containers(ids: string[]): Promise<unknown>;
}

export class WaveScheduler {
  private readonly changes: Quiescence<string>;
  private readonly events: Quiescence<string>;
  private readonly starts: Quiescence<string>;
  private readonly running = new Set<Promise<unknown>>();
  /** What announced the pending changes first (poll, webhook, mount, ...). */
  private changeTrigger?: AuditTrigger;

  constructor(
    runners: WaveRunners,
    private readonly log: FieldLogger,
    private readonly clock: Clock = systemClock,
  ) {
    this.changes = new Quiescence(
      DEBOUNCE_MS,
      DEBOUNCE_MAX_MS,
      (names) => {
        const trigger = this.changeTrigger;
        this.changeTrigger = undefined;
        this.track(runners.secrets(new Set(names), trigger ?? "poll"));
      },
      clock,
    );
    this.events = new Quiescence(EVENT_BATCH_MS, EVENT_BATCH_MS, (names) => this.track(runners.secrets(new Set(names), "event")), clock);
    this.starts = new Quiescence(START_BATCH_MS, START_BATCH_MS * 4, (ids) => this.track(runners.containers(ids)), clock);
  }

  /** Secrets changed (poll, fetch, webhook, event): reconcile the containers using them, after the debounce unless an event said so. */
  secretsChanged(names: string[], trigger: AuditTrigger = "poll"): void {
    if (trigger === "event") return this.events.add(names);
    this.changeTrigger ??= trigger;
    this.changes.add(names);
  }

  /** Containers started (or must be looked at again): reconcile them soon, batched. */
  containersChanged(ids: string[]): void {
    this.starts.add(ids);
  }

  /** Resolves when no wave is waiting or running. */
  async idle(): Promise<void> {
    while (this.waiting || this.running.size > 0) {
      if (this.waiting) await new Promise<void>((resolve) => this.clock.setTimeout(resolve, START_BATCH_MS));
      await Promise.all([...this.running]);
    }
  }

  private get waiting(): boolean {
    return this.changes.waiting || this.events.waiting || this.starts.waiting;
  }

  stop(): void {
    this.changes.cancel();
    this.events.cancel();
    this.starts.cancel();
  }

  private track(wave: Promise<unknown>): void {
    const tracked = wave.catch((error) => this.log.error("reconcile failed", { error: describeError(error) }));
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
  }
}
