/**
 * Debounce with a ceiling (consul-template's "quiescence"): changes that arrive close together
 * become one reconcile wave, fired `minMs` after the last change but never later than `maxMs`
 * after the first, so a secret that changes continuously is still rotated.
 */
export class Quiescence<T> {
  private pending = new Set<T>();
  private timer?: ReturnType<typeof setTimeout>;
  private firstAt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly fire: (batch: T[]) => void,
  ) {}

  add(items: Iterable<T>): void {
    for (const item of items) this.pending.add(item);
    const now = Date.now();
    if (!this.timer) this.firstAt = now;
    clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.minMs, this.firstAt + this.maxMs - now));
    this.timer = setTimeout(() => this.flush(), delay);
  }

  get waiting(): boolean {
    return this.timer !== undefined;
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending = new Set();
    this.fire(batch);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
  }
}
