/**
 * Debounce with a ceiling (consul-template's "quiescence"): changes that arrive close together
 * become one reconcile wave, fired `minMs` after the last change but never later than `maxMs`
 * after the first, so a secret that changes continuously is still rotated. Time comes from the
 * clock given (util/clock.ts): its tests move a manual one instead of sleeping.
 */
import { type Clock, systemClock, type TimerHandle } from "../util/clock.ts";

export class Quiescence<T> {
  private pending = new Set<T>();
  private timer?: TimerHandle;
  private firstAt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly fire: (batch: T[]) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  add(items: Iterable<T>): void {
    for (const item of items) this.pending.add(item);
    const now = this.clock.now();
    if (!this.timer) this.firstAt = now;
    this.clock.clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.minMs, this.firstAt + this.maxMs - now));
    this.timer = this.clock.setTimeout(() => this.flush(), delay);
  }

  get waiting(): boolean {
    return this.timer !== undefined;
  }

  flush(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending = new Set();
    this.fire(batch);
  }

  cancel(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
  }
}
