// Change detection by push, Google Cloud path: Secret Manager notifications in a Pub/Sub pull
// subscription, served by test/support/gcp-server.ts (Pub/Sub REST subset, same OAuth token
// check), read by the gcp provider's reader (providers/gcp/events.ts, with a real service-account
// token) and driven by the agent-side consumer (watcher/event-queue.ts) with a real SecretStore.
// The fingerprint source is counted, so "one check" is a number.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tokenSource } from "../../providers/gcp/auth.ts";
import { parseServiceAccountKey } from "../../providers/gcp/config.ts";
import { createPubSubEvents, secretsOfNotification } from "../../providers/gcp/events.ts";
import type { SecretSpec } from "../../src/config/types.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { FingerprintItem, SecretRef } from "../../src/rpc/protocol.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { ChangeEventConsumer, type ChangeEventSource } from "../../src/watcher/event-queue.ts";
import { GCP_TEST_PROJECT, startGcpServer, type GcpServer } from "../support/gcp-server.ts";

let gcp: GcpServer;
beforeAll(async () => {
  gcp = await startGcpServer();
});
afterAll(() => gcp.stop());

const never = new AbortController().signal;
const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64");
const notification = (eventType: string, secretId: string, data: unknown = { name: secretId }) => ({
  data: b64(data),
  attributes: { eventType, secretId, dataFormat: "JSON_API_V1" },
  messageId: "1",
  publishTime: new Date().toISOString(),
});

function spec(name: string): SecretSpec {
  return { name, provider: "gsm", inject: { type: "env" }, targets: { containers: [], labels: {} } as never, mappings: {}, rotation: {} as never };
}

function reader(subscription: string, extra: { maxPullReplyBytes?: number } = {}) {
  const key = parseServiceAccountKey(gcp.serviceAccountKey(), "test key");
  const tokens = tokenSource({ method: "service_account_key", key, keyPath: "test" }, "provider gsm (gcp)");
  return createPubSubEvents({ endpoint: gcp.url, subscription, project: GCP_TEST_PROJECT, tokens, who: "provider gsm (gcp)", ...extra });
}

function harness(subscription: string, declared: string[], extra: { maxPullReplyBytes?: number } = {}) {
  const events = reader(subscription, extra);
  const versions = new Map(declared.map((n) => [n, "v1"]));
  const checks: string[][] = [];
  /** Messages still unacknowledged when each check ran. */
  const unackedAtCheck: number[] = [];
  let failChecks = false;
  const source: ChangeEventSource = {
    async fingerprint(refs: SecretRef[]): Promise<FingerprintItem[]> {
      checks.push(refs.map((r) => r.name));
      unackedAtCheck.push(gcp.state.pubsub.unacked(subscription));
      if (failChecks) throw new Error("provider down");
      return refs.map((ref) => ({ ref, fingerprint: versions.get(ref.name) ?? "none" }));
    },
    call: (async (method: string, params: any, signal?: AbortSignal) => {
      const s = signal ?? never;
      if (method === "events") return { messages: await events.receive(params.waitSeconds, s) };
      if (method === "events_done") return (await events.done(params.receipts, s), {});
      return events.status(s);
    }) as ChangeEventSource["call"],
  };
  const store = new SecretStore(false);
  store.setSpecs(declared.map(spec));
  for (const name of declared) store.recordFingerprint(name, "v1", new Date());
  const changed: string[][] = [];
  const counts: Record<string, number> = {};
  const up: boolean[] = [];
  const warnings: string[] = [];
  const log: FieldLogger = { debug() {}, info() {}, warn: (m) => void warnings.push(m), error() {} };
  const consumer = new ChangeEventConsumer({
    provider: "gsm",
    source: () => source,
    store,
    log,
    callTimeoutMs: 7000, // pulls held 2 s: the test ends quickly
    onChanged: (names) => changed.push(names),
    counted: (outcome, n) => void (counts[outcome] = (counts[outcome] ?? 0) + n),
    queueUp: (u) => up.push(u),
    backoffMs: () => 100,
  });
  return { consumer, events, versions, checks, unackedAtCheck, changed, counts, up, warnings, failChecks: (on: boolean) => void (failChecks = on) };
}

async function until(what: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(10);
  }
}

describe("Secret Manager notifications", () => {
  test("a version event names the secret by full name, by id, and with the configured project", () => {
    const out = secretsOfNotification(notification("SECRET_VERSION_ADD", "projects/123456789012/secrets/db-password"), "my-project");
    expect(out).toEqual({ secrets: ["projects/123456789012/secrets/db-password", "db-password", "projects/my-project/secrets/db-password"] });
    for (const type of ["SECRET_VERSION_ENABLE", "SECRET_VERSION_DISABLE", "SECRET_VERSION_DESTROY", "SECRET_DELETE"]) {
      expect(secretsOfNotification(notification(type, "projects/p1/secrets/a"), "p1").problem).toBeUndefined();
    }
  });

  test("a regional secret's event names it in full (never declared here: counted as undeclared)", () => {
    expect(secretsOfNotification(notification("SECRET_VERSION_ADD", "projects/p1/locations/europe-west1/secrets/a"), "p1")).toEqual({ secrets: ["projects/p1/locations/europe-west1/secrets/a"] });
  });

  test("rotation reminders, metadata updates and the topic test message are not changes", () => {
    for (const type of ["SECRET_ROTATE", "SECRET_UPDATE", "SECRET_CREATE", "TOPIC_CONFIGURED"]) {
      expect(secretsOfNotification(notification(type, "projects/p1/secrets/a"), "p1").problem).toBe("not_a_secret_change");
    }
  });

  test("malformed and huge messages are problems, not exceptions", () => {
    expect(secretsOfNotification({ data: b64("x") }, "p").problem).toBe("malformed");
    expect(secretsOfNotification(notification("SECRET_VERSION_ADD", "not/a/secret"), "p").problem).toBe("malformed");
    expect(secretsOfNotification(notification("SECRET_VERSION_ADD", "projects/p/secrets/a", "{oops"), "p").problem).toBe("malformed");
    expect(secretsOfNotification({ ...notification("SECRET_VERSION_ADD", "projects/p/secrets/a"), data: "%%%" }, "p").problem).toBe("malformed");
    expect(secretsOfNotification(notification("SECRET_VERSION_ADD", "projects/p/secrets/a", { pad: "x".repeat(70_000) }), "p").problem).toBe("too_large");
    expect(secretsOfNotification("just a string", "p").problem).toBe("malformed");
  });
});

describe("Pub/Sub change events end to end (agent consumer + provider Pub/Sub reader)", () => {
  test("a SECRET_VERSION_ADD makes one check of the secret; it is acknowledged only after the check", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-change");
    const h = harness(sub, ["db-password", "other"]);
    h.versions.set("db-password", "v2");
    gcp.state.pubsub.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    h.consumer.start();
    await until(() => h.changed.length > 0);
    expect(h.changed).toEqual([["db-password"]]);
    expect(h.checks).toEqual([["db-password"]]);
    expect(h.unackedAtCheck).toEqual([1]);
    await until(() => gcp.state.pubsub.unacked(sub) === 0);
    await h.consumer.stop();
    expect(h.counts).toEqual({ checked: 1 });
  });

  test("a message whose check failed is not acknowledged (Pub/Sub delivers it again after the ack deadline)", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-keep");
    const h = harness(sub, ["db-password"]);
    h.failChecks(true);
    gcp.state.pubsub.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    const acksBefore = gcp.state.pubsub.calls.acknowledge ?? 0;
    h.consumer.start();
    await until(() => h.checks.length === 1);
    await Bun.sleep(100);
    await h.consumer.stop();
    const [message] = gcp.state.pubsub.subscriptions.get(sub)!.messages;
    expect(message!.leasedUntil).toBeGreaterThan(Date.now());
    expect(gcp.state.pubsub.calls.acknowledge ?? 0).toBe(acksBefore);
    expect(gcp.state.pubsub.unacked(sub)).toBe(1);
  });

  test("1,000 duplicates make one fingerprint check and all 1,000 are acknowledged", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-dup", 60);
    const h = harness(sub, ["db-password"]);
    for (let i = 0; i < 1000; i++) gcp.state.pubsub.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    h.versions.set("db-password", "v2");
    h.consumer.start();
    await until(() => gcp.state.pubsub.unacked(sub) === 0, 20_000);
    await h.consumer.stop();
    expect(h.checks.length).toBe(1);
    expect(h.changed).toEqual([["db-password"]]);
    expect(h.counts.checked).toBe(1000);
  });

  test("poison (malformed, huge, not a change) and undeclared secrets are counted and acknowledged; a good message behind them lands", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-poison");
    const h = harness(sub, ["db-password"]);
    const ps = gcp.state.pubsub;
    ps.publish(sub, { data: b64("{oops"), attributes: { eventType: "SECRET_VERSION_ADD", secretId: `projects/${GCP_TEST_PROJECT}/secrets/db-password` } });
    ps.publish(sub, { data: { pad: "x".repeat(100_000) }, attributes: { eventType: "SECRET_VERSION_ADD", secretId: `projects/${GCP_TEST_PROJECT}/secrets/db-password` } });
    ps.notify(sub, "SECRET_ROTATE", "db-password");
    ps.notify(sub, "SECRET_VERSION_ADD", "nobody-declared-me", 1);
    ps.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    h.versions.set("db-password", "v2");
    h.consumer.start();
    await until(() => ps.unacked(sub) === 0);
    await h.consumer.stop();
    expect(h.counts).toEqual({ malformed: 1, too_large: 1, not_a_secret_change: 1, undeclared: 1, checked: 1 });
    expect(h.checks).toEqual([["db-password"]]);
  });

  test("a pull reply over the ceiling is not read whole: then one message at a time, the huge ones acknowledged as too large", async () => {
    // The ceiling made small (16 MiB in the provider, above one 10 MB message in base64): 100 KiB,
    // and messages of 70 KB (over the 64 KiB a notification may be), two per pull reply = 190 KB.
    const sub = gcp.state.pubsub.createSubscription("s-huge", 1);
    const h = harness(sub, ["db-password"], { maxPullReplyBytes: 100 * 1024 });
    const ps = gcp.state.pubsub;
    const pad = "x".repeat(70 * 1024);
    for (let i = 0; i < 2; i++) ps.publish(sub, { data: { pad }, attributes: { eventType: "SECRET_VERSION_ADD", secretId: `projects/${GCP_TEST_PROJECT}/secrets/db-password` } });
    ps.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    h.versions.set("db-password", "v2");
    h.consumer.start();
    await until(() => ps.unacked(sub) === 0, 30_000);
    await h.consumer.stop();
    // At least once each (a 1 s ack deadline on a loaded machine may deliver one again).
    expect(h.counts.too_large).toBeGreaterThanOrEqual(2);
    expect(h.counts.checked).toBeGreaterThanOrEqual(1);
    expect(h.counts.queue_error ?? 0).toBeGreaterThanOrEqual(1);
    expect(h.changed).toEqual([["db-password"]]);
  }, 40_000);

  test("subscription down: one warning, the gauge goes to 0 and back, errors counted, events flow again", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-down");
    const h = harness(sub, ["db-password"]);
    gcp.state.pubsub.unavailable = true;
    h.consumer.start();
    await until(() => (h.counts.queue_error ?? 0) >= 3);
    gcp.state.pubsub.unavailable = false;
    h.versions.set("db-password", "v2");
    gcp.state.pubsub.notify(sub, "SECRET_VERSION_ADD", "db-password", 2);
    await until(() => h.changed.length > 0);
    await h.consumer.stop();
    expect(h.warnings).toEqual(["change-event queue unreachable: polling continues as before"]);
    expect(h.up).toEqual([false, true]);
  });

  test("a wait of 0 returns at once on an empty subscription; a wait of N ends after about N seconds, leaving later messages to the next pull", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-wait");
    const events = reader(sub);
    let started = Date.now();
    expect(await events.receive(0, never)).toEqual([]);
    const zero = Date.now() - started;
    started = Date.now();
    expect(await events.receive(1, never)).toEqual([]);
    const one = Date.now() - started;
    expect(zero).toBeLessThan(one);
    expect(one).toBeGreaterThanOrEqual(1000);
    // The abandoned pull took nothing with it: a message published after is pulled at once.
    await Bun.sleep(100);
    gcp.state.pubsub.notify(sub, "SECRET_VERSION_ADD", "db-password", 3);
    expect((await events.receive(0, never)).map((m) => m.secrets[1])).toEqual(["db-password"]);
  });

  test("status: a peek gives the oldest message's age and hands it straight back", async () => {
    const sub = gcp.state.pubsub.createSubscription("s-status");
    const events = reader(sub);
    expect(await events.status(never)).toEqual({});
    gcp.state.pubsub.publish(sub, { data: { name: "x" }, attributes: { eventType: "SECRET_VERSION_ADD", secretId: "projects/p/secrets/x" }, publishTime: new Date(Date.now() - 120_000).toISOString() });
    const status = await events.status(never);
    expect(status.oldestAgeSeconds).toBeGreaterThanOrEqual(119);
    // Handed back (ack deadline 0): the agent can pull it again at once.
    expect(gcp.state.pubsub.subscriptions.get(sub)!.messages[0]!.leasedUntil).toBeLessThanOrEqual(Date.now());
    expect((await events.receive(0, never)).length).toBe(1);
  });

  test("a missing subscription and a denied one fail naming the cause and the role, never the token", async () => {
    const missing = reader(`projects/${GCP_TEST_PROJECT}/subscriptions/no-such-sub`);
    await expect(missing.receive(0, never)).rejects.toMatchObject({ rpcCode: "CONFIG_INVALID", message: expect.stringContaining("not found") });
    const sub = gcp.state.pubsub.createSubscription("s-denied");
    gcp.state.pubsub.denied.add("s-denied");
    const error = await reader(sub).status(never).catch((e: Error) => e);
    expect(error).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("roles/pubsub.subscriber") });
    for (const token of gcp.state.acceptedTokens) expect(String((error as Error).message)).not.toContain(token);
  });
});
