// When waves run, on a manual clock: a change event (already coalesced by the consumer's drain)
// starts its wave without the debounce; poll bursts are still debounced into one wave.
import { describe, expect, test } from "bun:test";
import type { AuditTrigger } from "../../src/audit/audit-log.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import { DEBOUNCE_MAX_MS, DEBOUNCE_MS, WaveScheduler } from "../../src/reloader/wave-scheduler.ts";
import { ManualClock } from "../../src/util/clock.ts";

const quiet: FieldLogger = { debug() {}, info() {}, warn() {}, error() {} };

function manualScheduler() {
  const clock = new ManualClock();
  const waves: Array<{ names: string[]; trigger: AuditTrigger }> = [];
  const scheduler = new WaveScheduler(
    {
      secrets: async (names, trigger) => void waves.push({ names: [...names].sort(), trigger }),
      containers: async () => {},
    },
    quiet,
    clock,
  );
  return { scheduler, waves, advance: (ms: number) => clock.advance(ms) };
}

describe("WaveScheduler", () => {
  test("a change event starts its wave at once, while a poll burst is still coalesced by the debounce", async () => {
    const { scheduler, waves, advance } = manualScheduler();
    scheduler.secretsChanged(["a"], "poll");
    await advance(DEBOUNCE_MS - 100);
    scheduler.secretsChanged(["b", "a"], "poll");
    scheduler.secretsChanged(["db"], "event");
    scheduler.secretsChanged(["api"], "event");
    // No time has passed for the event: it waits only for the current tick (events of one tick are one wave).
    await advance(0);
    expect(waves).toEqual([{ names: ["api", "db"], trigger: "event" }]);
    await advance(DEBOUNCE_MS - 1);
    expect(waves.length).toBe(1);
    await advance(1);
    expect(waves).toEqual([
      { names: ["api", "db"], trigger: "event" },
      { names: ["a", "b"], trigger: "poll" },
    ]);
    scheduler.stop();
  });

  test("a poll stream still fires by the ceiling; a later event does not wait for it", async () => {
    const { scheduler, waves, advance } = manualScheduler();
    for (let t = 0; t < DEBOUNCE_MAX_MS; t += DEBOUNCE_MS / 2) {
      scheduler.secretsChanged(["a"], "poll");
      await advance(DEBOUNCE_MS / 2);
    }
    expect(waves).toEqual([{ names: ["a"], trigger: "poll" }]);
    scheduler.secretsChanged(["a"], "poll");
    scheduler.secretsChanged(["a"], "event");
    await advance(0);
    expect(waves.at(-1)).toEqual({ names: ["a"], trigger: "event" });
    scheduler.stop();
  });
});

describe("WaveScheduler.idle", () => {
  test("waits on the scheduler's own clock: it resolves only once the debounced wave has run", async () => {
    const { scheduler, waves, advance } = manualScheduler();
    scheduler.secretsChanged(["a"], "poll");
    let idle = false;
    const done = scheduler.idle().then(() => {
      idle = true;
    });
    await advance(DEBOUNCE_MS - 1);
    expect(idle).toBe(false);
    expect(waves).toEqual([]);
    await advance(DEBOUNCE_MS);
    await done;
    expect(waves).toEqual([{ names: ["a"], trigger: "poll" }]);
    scheduler.stop();
  });
});
