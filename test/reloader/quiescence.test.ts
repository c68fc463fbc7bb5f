import { describe, expect, test } from "bun:test";
import { Quiescence } from "../../src/reloader/quiescence.ts";

describe("Quiescence (debounce with a ceiling)", () => {
  test("changes close together fire once, after the last one", async () => {
    const fired: string[][] = [];
    const q = new Quiescence<string>(40, 1000, (batch) => fired.push(batch));
    q.add(["a"]);
    await Bun.sleep(20);
    q.add(["b", "a"]);
    await Bun.sleep(20);
    expect(fired).toEqual([]);
    await Bun.sleep(40);
    expect(fired).toEqual([["a", "b"]]);
  });

  test("a stream of changes still fires by the ceiling", async () => {
    const fired: number[][] = [];
    const q = new Quiescence<number>(30, 100, (batch) => fired.push(batch));
    const started = Date.now();
    for (let i = 0; i < 12; i++) {
      q.add([i]);
      await Bun.sleep(15);
    }
    expect(fired.length).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeGreaterThan(100);
    q.cancel();
  });
});
