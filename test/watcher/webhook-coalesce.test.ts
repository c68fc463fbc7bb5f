/**
 * Issue 18 finding 9: webhook-triggered polls are coalesced. A fake provider process counts its
 * fingerprint calls (each takes 30 ms, as a real one takes a while). The scheduler runs on a
 * manual clock (util/clock.ts): the count is exact and nothing sleeps.
 */
import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/parse.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { PollScheduler } from "../../src/watcher/poll-scheduler.ts";

/** WEBHOOK_POLL_GAP_MS in poll-scheduler.ts (spelled out so this test also runs against code without it). */
const WEBHOOK_POLL_GAP_MS = 1000;
const quiet: FieldLogger = { debug() {}, info() {}, warn() {}, error() {} };

test("300 webhook calls while polls run make 2 fingerprint calls (one now, one a gap later), and a later call still polls", async () => {
  const clock = new ManualClock();
  const { config } = parseConfig("providers:\n  p:\n    type: file\nsecrets:\n  - name: token\n", "dso.yaml", {});
  const store = new SecretStore(false);
  store.setSpecs(config.secrets);
  let calls = 0;
  const fake = {
    fingerprint: async (refs: unknown[]) => {
      calls++;
      await new Promise((resolve) => clock.setTimeout(() => resolve(undefined), 30));
      return refs.map(() => ({ fingerprint: `hmac-sha256:${"0".repeat(64)}` }));
    },
    stop: async () => {},
    getStatus: () => ({}),
  } as unknown as ProviderProcess;
  const polls = new PollScheduler({ store, log: quiet, intervalMs: () => 3_600_000, startProcess: () => fake, pollFinished: () => {}, onChanged: () => {}, clock });
  try {
    polls.sync(config.providers);
    await clock.advance(30);
    expect(polls.providers.get("p")?.lastPoll).toBeDefined();
    calls = 0;
    for (let i = 0; i < 300; i++) {
      expect(polls.pollNow({ provider: "p" })).toBe(true);
      if (i % 10 === 9) await clock.advance(10);
    }
    // The first call polls at once; the calls during it queue one more, WEBHOOK_POLL_GAP_MS after it started.
    expect(calls).toBe(1);
    await clock.advance(WEBHOOK_POLL_GAP_MS + 500);
    expect(calls).toBe(2);
    await clock.advance(WEBHOOK_POLL_GAP_MS);
    polls.pollNow({ provider: "p" });
    await clock.advance(100);
    expect(calls).toBe(3);
    // The regular schedule goes on: the next poll is about an interval away.
    expect(polls.providers.get("p")!.nextPollAt! - clock.now()).toBeGreaterThan(3_000_000);
  } finally {
    polls.halt();
  }
});
