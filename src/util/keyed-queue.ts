/**
 * One keyed work queue: work for the same key (a container, a DSO volume) runs one at a time, in
 * order; work for different keys runs concurrently. The reconciler and the volume driver share it,
 * so a Mount, a rotation and a reconcile of the same volume or container never interleave.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly inFlight = new Set<Promise<unknown>>();

  /** Runs `work` after every earlier work of `key` has settled (whatever its outcome). */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, settled);
    this.inFlight.add(settled);
    void settled.then(() => {
      this.inFlight.delete(settled);
      if (this.tails.get(key) === settled) this.tails.delete(key);
    });
    return next;
  }

  /** True while work for `key` is queued or running. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  /** Resolves when no work is queued or running (work queued meanwhile is waited for too). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }
}
