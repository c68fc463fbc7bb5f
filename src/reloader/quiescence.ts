/**
 * Debounce with a ceiling (consul-template's "quiescence"): changes that arrive close together
 * become one reconcile wave, fired `minMs` after the last change but never later than `maxMs`
 * after the first, so a secret that changes continuously is still rotated.
 */
/** The time a Quiescence reads and the timer it sets (tests pass a manual one). */
export interface Timers {
  now(): number;
  setTimeout(fire: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fire, ms) => setTimeout(fire, ms),
  clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

export class Quiescence<T> {
  private pending = new Set<T>();
  private timer?: unknown;
  private firstAt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly fire: (batch: T[]) => void,
    private readonly timers: Timers = realTimers,
  ) {}

  add(items: Iterable<T>): void {
    for (const item of items) this.pending.add(item);
    const now = this.timers.now();
    if (this.timer === undefined) this.firstAt = now;
    else this.timers.clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.minMs, this.firstAt + this.maxMs - now));
    this.timer = this.timers.setTimeout(() => this.flush(), delay);
  }

  get waiting(): boolean {
    return this.timer !== undefined;
  }

  flush(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending = new Set();
    this.fire(batch);
  }

  cancel(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
  }
}
