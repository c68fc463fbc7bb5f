// When waves run, on a manual clock: a change event (already coalesced by the consumer's drain)
// starts its wave without the debounce; poll bursts are still debounced into one wave.
import { describe, expect, test } from "bun:test";
import type { AuditTrigger } from "../../src/audit/audit-log.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { Timers } from "../../src/reloader/quiescence.ts";
import { DEBOUNCE_MAX_MS, DEBOUNCE_MS, WaveScheduler } from "../../src/reloader/wave-scheduler.ts";

/** Timers that fire only when the test moves the clock. */
function manualTimers() {
  let now = 0;
  let nextId = 0;
  const due = new Map<number, { at: number; fire: () => void }>();
  const timers: Timers = {
    now: () => now,
    setTimeout: (fire, ms) => (due.set(++nextId, { at: now + ms, fire }), nextId),
    clearTimeout: (id) => void due.delete(id as number),
  };
  function advance(ms: number) {
    const end = now + ms;
    for (;;) {
      const next = [...due].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      due.delete(next[0]);
      now = next[1].at;
      next[1].fire();
    }
    now = end;
  }
  return { timers, advance };
}

const quiet: FieldLogger = { debug() {}, info() {}, warn() {}, error() {} };

function manualScheduler() {
  const clock = manualTimers();
  const waves: Array<{ names: string[]; trigger: AuditTrigger }> = [];
  const scheduler = new WaveScheduler(
    {
      secrets: async (names, trigger) => void waves.push({ names: [...names].sort(), trigger }),
      containers: async () => {},
    },
    quiet,
    clock.timers,
  );
  return { scheduler, waves, advance: clock.advance };
}

describe("WaveScheduler", () => {
  test("a change event starts its wave at once, while a poll burst is still coalesced by the debounce", () => {
    const { scheduler, waves, advance } = manualScheduler();
    scheduler.secretsChanged(["a"], "poll");
    advance(DEBOUNCE_MS - 100);
    scheduler.secretsChanged(["b", "a"], "poll");
    scheduler.secretsChanged(["db"], "event");
    scheduler.secretsChanged(["api"], "event");
    // No time has passed for the event: it waits only for the current tick (events of one tick are one wave).
    advance(0);
    expect(waves).toEqual([{ names: ["api", "db"], trigger: "event" }]);
    advance(DEBOUNCE_MS - 1);
    expect(waves.length).toBe(1);
    advance(1);
    expect(waves).toEqual([
      { names: ["api", "db"], trigger: "event" },
      { names: ["a", "b"], trigger: "poll" },
    ]);
    scheduler.stop();
  });

  test("a poll stream still fires by the ceiling; a later event does not wait for it", () => {
    const { scheduler, waves, advance } = manualScheduler();
    for (let t = 0; t < DEBOUNCE_MAX_MS; t += DEBOUNCE_MS / 2) {
      scheduler.secretsChanged(["a"], "poll");
      advance(DEBOUNCE_MS / 2);
    }
    expect(waves).toEqual([{ names: ["a"], trigger: "poll" }]);
    scheduler.secretsChanged(["a"], "poll");
    scheduler.secretsChanged(["a"], "event");
    advance(0);
    expect(waves.at(-1)).toEqual({ names: ["a"], trigger: "event" });
    scheduler.stop();
  });
});
