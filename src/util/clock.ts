/**
 * Time as a parameter: the engines that wait (debounce, poll schedule) read the time and set
 * timers through a `Clock`, so their tests move a `ManualClock` forward instead of sleeping.
 * `systemClock` is the real one (Date.now and the global timers).
 */

/** What `setTimeout` returned; only ever handed back to the same clock's `clearTimeout`. */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
  setTimeout(run: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (run, delayMs) => setTimeout(run, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout> | undefined),
};

interface ManualTimer {
  at: number;
  seq: number;
  run: () => void;
}

/**
 * A clock that moves only when told to. Timers due at the same time run in the order they were
 * set; between two timers, `advance` lets pending promise callbacks run, so a timer that starts
 * async work (a poll) sees it progress as it would on the real clock.
 */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly timers = new Set<ManualTimer>();

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(run: () => void, delayMs: number): TimerHandle {
    // As the global setTimeout: a negative or non-numeric delay means now.
    const timer: ManualTimer = { at: this.current + (Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0), seq: this.seq++, run };
    this.timers.add(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle as ManualTimer);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** When the next timer is due, or undefined. */
  nextAt(): number | undefined {
    return this.next()?.at;
  }

  /** Moves time forward by `ms`, running each timer that falls due, in order, with pending work settled between. */
  async advance(ms: number): Promise<void> {
    const until = this.current + ms;
    await settle();
    for (let timer = this.next(); timer && timer.at <= until; timer = this.next()) {
      this.timers.delete(timer);
      this.current = Math.max(this.current, timer.at);
      timer.run();
      await settle();
    }
    this.current = until;
  }

  private next(): ManualTimer | undefined {
    let first: ManualTimer | undefined;
    for (const timer of this.timers) if (!first || timer.at < first.at || (timer.at === first.at && timer.seq < first.seq)) first = timer;
    return first;
  }
}

/** Lets promise callbacks already queued (and the ones they queue, a few levels deep) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
