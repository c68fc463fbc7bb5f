import { afterEach, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import type { NotificationsConfig, WebhookTarget } from "../../src/config/types.ts";
import { DsoError } from "../../src/errors.ts";
import { forgetSecretValue, registerSecretValue } from "../../src/log/redact.ts";
import { WebhookNotifier } from "../../src/notify/webhook-notifier.ts";

interface Received {
  body: Record<string, unknown>;
  headers: Headers;
}

/** A local webhook receiver: answers with `statuses` in turn (then 200), or hangs while `hang` is set. */
function receiver(statuses: number[] = [], hang?: Promise<void>) {
  const received: Received[] = [];
  let calls = 0;
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      calls++;
      const body = (await req.json()) as Record<string, unknown>;
      if (hang) await hang;
      const status = statuses.shift() ?? 200;
      if (status === 200) received.push({ body, headers: req.headers });
      return new Response("", { status });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/hook`, received, calls: () => calls, stop: () => server.stop(true) };
}

const quiet = { warn: () => {}, debug: () => {} };
const warnings: string[] = [];
const recording = { warn: (m: string) => void warnings.push(m), debug: () => {} };

type HookSpec = Omit<WebhookTarget, "timeoutMs" | "maxRetries"> & Partial<Pick<WebhookTarget, "timeoutMs" | "maxRetries">>;

/** `timeoutMs` / `maxRetries` here are what every webhook gets unless it sets its own. */
function config(overrides: { enabled?: boolean; queueSize?: number; timeoutMs?: number; maxRetries?: number; webhooks: HookSpec[] }): NotificationsConfig {
  const { timeoutMs = 2000, maxRetries = 2, webhooks, ...rest } = overrides;
  return { enabled: true, queueSize: 100, ...rest, webhooks: webhooks.map((hook) => ({ timeoutMs, maxRetries, ...hook })) };
}

const ALL = ["rotation_succeeded", "rotation_failed", "delivery_failed", "provider_unavailable", "provider_recovered"] as const;
const stops: (() => unknown)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  warnings.length = 0;
});

describe("webhook notifications", () => {
  test("posts each event a webhook asked for, with its headers, as a JSON payload without values", async () => {
    const hook = receiver();
    stops.push(hook.stop);
    const notifier = new WebhookNotifier(
      config({ webhooks: [{ url: hook.url, events: ["rotation_succeeded", "rotation_failed"], headers: { Authorization: "Bearer hook-token" } }] }),
      { log: quiet, version: "9.9.9", host: "box" },
    );
    notifier.notify("rotation_succeeded", { secret: "app/db", provider: "vault", version: "0123456789abcdef", container: { id: "c1", name: "web" }, strategy: "rolling" });
    notifier.notify("delivery_failed", { secret: "app/db" });
    await notifier.idle();
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]!.headers.get("authorization")).toBe("Bearer hook-token");
    expect(hook.received[0]!.headers.get("content-type")).toBe("application/json");
    expect(hook.received[0]!.body).toEqual({
      v: 1,
      event: "rotation_succeeded",
      time: expect.any(String),
      agent: { version: "9.9.9", host: "box" },
      secret: "app/db",
      provider: "vault",
      version: "0123456789ab",
      container: { id: "c1", name: "web" },
      strategy: "rolling",
    });
  });

  test("retries on 5xx and 429 with doubling waits, and gives up after max_retries", async () => {
    const hook = receiver([500, 429]);
    stops.push(hook.stop);
    const outcomes: string[] = [];
    const notifier = new WebhookNotifier(config({ maxRetries: 2, webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), {
      log: quiet,
      version: "1",
      retryBaseMs: 10,
      onOutcome: (_, outcome) => outcomes.push(outcome),
    });
    notifier.notify("rotation_failed", { secret: "x", error: new DsoError("DELIVERY_FAILED", "tar failed") });
    await notifier.idle();
    expect(hook.calls()).toBe(3);
    expect(hook.received[0]!.body.error).toEqual({ code: "DELIVERY_FAILED", message: "tar failed" });

    const failing = receiver([503, 503, 503, 503]);
    stops.push(failing.stop);
    const once = new WebhookNotifier(config({ maxRetries: 1, webhooks: [{ url: failing.url, events: [...ALL], headers: {} }] }), {
      log: recording,
      version: "1",
      retryBaseMs: 10,
      onOutcome: (_, outcome) => outcomes.push(outcome),
    });
    once.notify("rotation_failed", {});
    await once.idle();
    expect(failing.calls()).toBe(2);
    expect(outcomes).toEqual(["sent", "failed"]);
    expect(warnings).toContain("notification not delivered");
  });

  test("each webhook uses its own max_retries and timeout (the Go DSO sets them per webhook)", async () => {
    const noRetries = receiver([503, 503, 503]);
    const twoRetries = receiver([503, 503, 503]);
    stops.push(noRetries.stop, twoRetries.stop);
    const notifier = new WebhookNotifier(
      config({
        maxRetries: 1,
        webhooks: [
          { url: noRetries.url, events: [...ALL], headers: {}, maxRetries: 0 },
          { url: twoRetries.url, events: [...ALL], headers: {}, maxRetries: 2 },
        ],
      }),
      { log: quiet, version: "1", retryBaseMs: 10 },
    );
    notifier.notify("rotation_failed", {});
    await notifier.idle();
    expect(noRetries.calls()).toBe(1);
    expect(twoRetries.calls()).toBe(3);

    let release!: () => void;
    const hang = new Promise<void>((resolve) => (release = resolve));
    const slow = receiver([], hang);
    stops.push(async () => {
      release();
      await slow.stop();
    });
    const started = Date.now();
    const short = new WebhookNotifier(config({ timeoutMs: 60_000, maxRetries: 0, webhooks: [{ url: slow.url, events: [...ALL], headers: {}, timeoutMs: 100 }] }), { log: recording, version: "1" });
    short.notify("rotation_failed", {});
    await short.idle();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(warnings).toContain("notification not delivered");
  });

  test("a 4xx answer is not retried", async () => {
    const hook = receiver([404]);
    stops.push(hook.stop);
    const notifier = new WebhookNotifier(config({ webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), { log: quiet, version: "1", retryBaseMs: 10 });
    notifier.notify("rotation_failed", {});
    await notifier.idle();
    expect(hook.calls()).toBe(1);
  });

  test("a hanging receiver never blocks notify(): the bounded queue drops and counts the overflow", async () => {
    let release!: () => void;
    const hang = new Promise<void>((resolve) => (release = resolve));
    const hook = receiver([], hang);
    stops.push(() => {
      release();
      return hook.stop();
    });
    const outcomes: Record<string, number> = {};
    const notifier = new WebhookNotifier(config({ queueSize: 10, timeoutMs: 60_000, webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), {
      log: recording,
      version: "1",
      onOutcome: (_, outcome) => void (outcomes[outcome] = (outcomes[outcome] ?? 0) + 1),
    });
    const started = performance.now();
    for (let i = 0; i < 1000; i++) notifier.notify("rotation_succeeded", { secret: `s${i}` });
    expect(performance.now() - started).toBeLessThan(200);
    // One in flight (hanging), ten queued, the rest dropped.
    expect(notifier.pending).toBe(11);
    expect(outcomes.dropped).toBe(989);
    expect(warnings.filter((w) => w.startsWith("notification queue full"))).toHaveLength(1);
    release();
    await notifier.idle();
    expect(hook.received).toHaveLength(11);
    expect(outcomes.sent).toBe(11);
  });

  test("a timeout counts as a failed attempt", async () => {
    const hook = receiver([], new Promise(() => {}));
    stops.push(hook.stop);
    const notifier = new WebhookNotifier(config({ timeoutMs: 100, maxRetries: 1, webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), { log: recording, version: "1", retryBaseMs: 10 });
    notifier.notify("provider_unavailable", { provider: "vault" });
    await notifier.idle();
    expect(hook.calls()).toBe(2);
    expect(warnings).toContain("notification not delivered");
  });

  test("disabled notifications send nothing; stop() abandons what is left after the grace time", async () => {
    const hook = receiver([], new Promise(() => {}));
    stops.push(hook.stop);
    const off = new WebhookNotifier(config({ enabled: false, webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), { log: quiet, version: "1" });
    off.notify("rotation_failed", {});
    expect(off.pending).toBe(0);
    const on = new WebhookNotifier(config({ timeoutMs: 60_000, webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), { log: quiet, version: "1" });
    on.notify("rotation_failed", {});
    const started = performance.now();
    await on.stop(100);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(on.pending).toBe(0);
  });

  test("a value that slipped into an error message is redacted from the payload", async () => {
    const planted = "planted-value-for-notify";
    registerSecretValue(planted);
    const hook = receiver();
    stops.push(hook.stop);
    try {
      const notifier = new WebhookNotifier(config({ webhooks: [{ url: hook.url, events: [...ALL], headers: {} }] }), { log: quiet, version: "1" });
      notifier.notify("delivery_failed", { secret: "x", error: new Error(`provider echoed ${planted}`) });
      await notifier.idle();
      expect(JSON.stringify(hook.received[0]!.body)).not.toContain(planted);
      expect((hook.received[0]!.body.error as { message: string }).message).toBe("provider echoed [REDACTED]");
    } finally {
      forgetSecretValue(planted);
    }
  });
});
