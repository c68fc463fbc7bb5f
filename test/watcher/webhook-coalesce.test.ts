/**
 * Issue 18 finding 9: webhook-triggered polls are coalesced. A fake provider process counts its
 * fingerprint calls (each takes 30 ms, as a real one takes a while).
 */
import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/parse.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { PollScheduler } from "../../src/watcher/poll-scheduler.ts";

/** WEBHOOK_POLL_GAP_MS in poll-scheduler.ts (spelled out so this test also runs against code without it). */
const WEBHOOK_POLL_GAP_MS = 1000;
const quiet: FieldLogger = { debug() {}, info() {}, warn() {}, error() {} };

test("300 webhook calls while polls run make at most 3 fingerprint calls, and a later call still polls", async () => {
  const { config } = parseConfig("providers:\n  p:\n    type: file\nsecrets:\n  - name: token\n", "dso.yaml", {});
  const store = new SecretStore(false);
  store.setSpecs(config.secrets);
  let calls = 0;
  const fake = {
    fingerprint: async (refs: unknown[]) => {
      calls++;
      await Bun.sleep(30);
      return refs.map(() => ({ fingerprint: `hmac-sha256:${"0".repeat(64)}` }));
    },
    stop: async () => {},
    getStatus: () => ({}),
  } as unknown as ProviderProcess;
  const polls = new PollScheduler({ store, log: quiet, intervalMs: () => 3_600_000, startProcess: () => fake, pollFinished: () => {}, onChanged: () => {} });
  try {
    polls.sync(config.providers);
    while (!polls.providers.get("p")?.lastPoll) await Bun.sleep(5);
    calls = 0;
    for (let i = 0; i < 300; i++) {
      expect(polls.pollNow({ provider: "p" })).toBe(true);
      if (i % 10 === 9) await Bun.sleep(10);
    }
    await Bun.sleep(WEBHOOK_POLL_GAP_MS + 500);
    console.log(`300 webhook calls: ${calls} fingerprint calls`);
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(3);
    const before = calls;
    await Bun.sleep(WEBHOOK_POLL_GAP_MS);
    polls.pollNow({ provider: "p" });
    await Bun.sleep(100);
    expect(calls).toBe(before + 1);
    // The regular schedule goes on: the next poll is about an interval away.
    expect(polls.providers.get("p")!.nextPollAt! - Date.now()).toBeGreaterThan(3_000_000);
  } finally {
    polls.halt();
  }
});
