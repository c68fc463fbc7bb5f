import { describe, expect, test } from "bun:test";
import { backoffDelay } from "../../src/rpc/supervisor.ts";
import { nextPollDelay } from "../../src/watcher/provider-poller.ts";

describe("providers.*.retry is honoured", () => {
  test("a failed poll is tried `attempts` times in all, `backoff` apart and doubling, then the interval", () => {
    const retry = { attempts: 3, backoffMs: 2000 };
    expect(nextPollDelay(0, retry, 300_000)).toBe(300_000);
    expect(nextPollDelay(1, retry, 300_000)).toBe(2000);
    expect(nextPollDelay(2, retry, 300_000)).toBe(4000);
    expect(nextPollDelay(3, retry, 300_000)).toBe(300_000);
    expect(nextPollDelay(1, { attempts: 1, backoffMs: 2000 }, 300_000)).toBe(300_000);
    expect(nextPollDelay(1, retry, 1000)).toBe(1000);
  });

  test("a crashed provider is restarted after `backoff`, doubling", () => {
    const mid = () => 0.5;
    expect(backoffDelay(1, mid, 2000)).toBe(2000);
    expect(backoffDelay(2, mid, 2000)).toBe(4000);
    expect(backoffDelay(20, mid, 2000)).toBe(30_000);
  });
});
