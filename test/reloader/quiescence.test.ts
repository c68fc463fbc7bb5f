/** Quiescence on a manual clock: when a batch fires is checked to the millisecond, without sleeping. */
import { describe, expect, test } from "bun:test";
import { Quiescence } from "../../src/reloader/quiescence.ts";
import { ManualClock } from "../../src/util/clock.ts";

describe("Quiescence (debounce with a ceiling)", () => {
  test("changes close together fire once, `min` after the last one", async () => {
    const clock = new ManualClock();
    const fired: Array<{ batch: string[]; at: number }> = [];
    const start = clock.now();
    const q = new Quiescence<string>(40, 1000, (batch) => fired.push({ batch, at: clock.now() - start }), clock);
    q.add(["a"]);
    await clock.advance(20);
    q.add(["b", "a"]);
    await clock.advance(39);
    expect(fired).toEqual([]);
    expect(q.waiting).toBe(true);
    await clock.advance(1);
    expect(fired).toEqual([{ batch: ["a", "b"], at: 60 }]);
    expect(q.waiting).toBe(false);
  });

  test("a stream of changes still fires by the ceiling, `max` after the first", async () => {
    const clock = new ManualClock();
    const fired: Array<{ batch: number[]; at: number }> = [];
    const start = clock.now();
    const q = new Quiescence<number>(30, 100, (batch) => fired.push({ batch, at: clock.now() - start }), clock);
    for (let i = 0; i < 12; i++) {
      q.add([i]);
      await clock.advance(15);
    }
    // Changes 15 ms apart never leave 30 ms of quiet: the 100 ms ceiling fires the first batch;
    // the second (from 105) ends 30 ms after the last change, at 195, before its own ceiling at 205.
    expect(fired.map((f) => f.at)).toEqual([100]);
    expect(fired[0]!.batch).toEqual([0, 1, 2, 3, 4, 5, 6]);
    await clock.advance(30);
    expect(fired.map((f) => f.at)).toEqual([100, 195]);
    expect(fired[1]!.batch).toEqual([7, 8, 9, 10, 11]);
  });

  test("cancel drops what was pending; flush fires it now", async () => {
    const clock = new ManualClock();
    const fired: string[][] = [];
    const q = new Quiescence<string>(50, 500, (batch) => fired.push(batch), clock);
    q.add(["x"]);
    q.cancel();
    await clock.advance(1000);
    expect(fired).toEqual([]);
    q.add(["y"]);
    q.flush();
    expect(fired).toEqual([["y"]]);
    expect(clock.pending).toBe(0);
  });
});
