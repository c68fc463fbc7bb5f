/**
 * When waves run: changes of secrets closer together than DEBOUNCE_MS become one wave over the
 * containers using them (at most DEBOUNCE_MAX_MS after the first), container starts closer
 * together than START_BATCH_MS one wave over those containers. Keeps the running waves, so a
 * SIGTERM (or a test) can wait for them.
 */
import type { AuditTrigger } from "../audit/audit-log.ts";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { Quiescence } from "./quiescence.ts";

/** Changes closer together than this become one wave; a wave waits at most MAX after the first. */
export const DEBOUNCE_MS = 300;
export const DEBOUNCE_MAX_MS = 2_000;
/** Container starts closer together than this are reconciled in one wave (one fetch). */
export const START_BATCH_MS = 50;

export interface WaveRunners {
  /** A wave over the containers using these secrets. */
  secrets(names: Set<string>, trigger: AuditTrigger): Promise<unknown>;
  /** A wave over these containers. */
  containers(ids: string[]): Promise<unknown>;
}

export class WaveScheduler {
  private readonly changes: Quiescence<string>;
  private readonly starts: Quiescence<string>;
  private readonly running = new Set<Promise<unknown>>();
  /** What announced the pending changes first (poll, webhook, mount, ...). */
  private changeTrigger?: AuditTrigger;

  constructor(
    runners: WaveRunners,
    private readonly log: FieldLogger,
  ) {
    this.changes = new Quiescence(DEBOUNCE_MS, DEBOUNCE_MAX_MS, (names) => {
      const trigger = this.changeTrigger;
      this.changeTrigger = undefined;
      this.track(runners.secrets(new Set(names), trigger ?? "poll"));
    });
    this.starts = new Quiescence(START_BATCH_MS, START_BATCH_MS * 4, (ids) => this.track(runners.containers(ids)));
  }

  /** Secrets changed (poll, fetch, webhook): debounce, then reconcile the containers using them. */
  secretsChanged(names: string[], trigger: AuditTrigger = "poll"): void {
    this.changeTrigger ??= trigger;
    this.changes.add(names);
  }

  /** Containers started (or must be looked at again): reconcile them soon, batched. */
  containersChanged(ids: string[]): void {
    this.starts.add(ids);
  }

  /** Resolves when no wave is waiting or running. */
  async idle(): Promise<void> {
    while (this.changes.waiting || this.starts.waiting || this.running.size > 0) {
      if (this.changes.waiting || this.starts.waiting) await Bun.sleep(START_BATCH_MS);
      await Promise.all([...this.running]);
    }
  }

  stop(): void {
    this.changes.cancel();
    this.starts.cancel();
  }

  private track(wave: Promise<unknown>): void {
    const tracked = wave.catch((error) => this.log.error("reconcile failed", { error: describeError(error) }));
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
  }
}
