/** The manual clock the waiting engines' tests use: timers run in due order, cleared ones never. */
import { describe, expect, test } from "bun:test";
import { ManualClock, systemClock } from "../../src/util/clock.ts";

describe("ManualClock", () => {
  test("advance runs due timers in time order (set order on a tie), and the time reads as each one's", async () => {
    const clock = new ManualClock(1000);
    const ran: Array<[string, number]> = [];
    clock.setTimeout(() => ran.push(["b", clock.now()]), 20);
    clock.setTimeout(() => ran.push(["a", clock.now()]), 10);
    clock.setTimeout(() => ran.push(["a2", clock.now()]), 10);
    const cleared = clock.setTimeout(() => ran.push(["never", clock.now()]), 5);
    clock.clearTimeout(cleared);
    clock.setTimeout(() => ran.push(["late", clock.now()]), 31);
    await clock.advance(30);
    expect(ran).toEqual([
      ["a", 1010],
      ["a2", 1010],
      ["b", 1020],
    ]);
    expect(clock.now()).toBe(1030);
    expect(clock.pending).toBe(1);
    expect(clock.nextAt()).toBe(1031);
  });

  test("a timer set by a timer, or by async work a timer started, runs in the same advance when due", async () => {
    const clock = new ManualClock(0);
    const ran: number[] = [];
    clock.setTimeout(async () => {
      await Promise.resolve();
      clock.setTimeout(() => ran.push(clock.now()), 5);
    }, 1);
    clock.setTimeout(() => clock.setTimeout(() => ran.push(clock.now()), 0), 2);
    await clock.advance(10);
    expect(ran).toEqual([2, 6]);
  });

  test("a negative or non-numeric delay means now, as with the global setTimeout", async () => {
    const clock = new ManualClock(0);
    let runs = 0;
    clock.setTimeout(() => runs++, Number.NaN);
    clock.setTimeout(() => runs++, -5);
    await clock.advance(0);
    expect(runs).toBe(2);
  });

  test("the system clock is Date.now and the global timers", async () => {
    expect(Math.abs(systemClock.now() - Date.now())).toBeLessThan(1000);
    let ran = false;
    const handle = systemClock.setTimeout(() => (ran = true), 0);
    systemClock.clearTimeout(handle);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toBe(false);
  });
});
