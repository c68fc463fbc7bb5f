import { describe, expect, test } from "bun:test";
import { KeyedQueue } from "../../src/util/keyed-queue.ts";
import { mapLimit } from "../../src/util/map-limit.ts";

describe("KeyedQueue", () => {
  test("work for one key runs one at a time, in order; other keys run alongside", async () => {
    const q = new KeyedQueue();
    const events: string[] = [];
    const job = (key: string, name: string, ms: number) =>
      q.run(key, async () => {
        events.push(`start ${name}`);
        await Bun.sleep(ms);
        events.push(`end ${name}`);
        return name;
      });
    const results = await Promise.all([job("a", "a1", 30), job("a", "a2", 1), job("b", "b1", 5)]);
    expect(results).toEqual(["a1", "a2", "b1"]);
    expect(events.indexOf("end a1")).toBeLessThan(events.indexOf("start a2"));
    expect(events.indexOf("start b1")).toBeLessThan(events.indexOf("end a1"));
  });

  test("a failure does not block the next work of the key, and idle() waits for everything", async () => {
    const q = new KeyedQueue();
    const failed = q.run("k", async () => {
      throw new Error("boom");
    });
    let ran = false;
    const next = q.run("k", async () => {
      await Bun.sleep(10);
      ran = true;
    });
    await expect(failed).rejects.toThrow("boom");
    expect(q.busy("k")).toBe(true);
    await q.idle();
    await next;
    expect(ran).toBe(true);
    expect(q.busy("k")).toBe(false);
  });
});

describe("mapLimit", () => {
  test("keeps order and never runs more than the limit at once", async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await Bun.sleep(n);
      running--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });
});
