// Change detection by push, AWS path: the aws provider's SQS consumer (real @aws-sdk/client-sqs)
// against test/support/sqs-server.ts, driven by the agent-side consumer (watcher/event-queue.ts)
// with a real SecretStore. The fingerprint source is counted, so "one check" is a number.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSqsEventQueue, secretsOfEventBridge } from "../../providers/aws/events.ts";
import type { SecretSpec } from "../../src/config/types.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { FingerprintItem, SecretRef } from "../../src/rpc/protocol.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { ChangeEventConsumer, type ChangeEventSource } from "../../src/watcher/event-queue.ts";
import { AWS_TEST_ACCESS_KEY_ID } from "../support/aws-server.ts";
import { startSqsServer, type SqsServer } from "../support/sqs-server.ts";

const ARN = (name: string) => `arn:aws:secretsmanager:us-east-1:123456789012:secret:${name}-AbC123`;
/** Secrets Manager's own EventBridge event, as the issue describes it. */
const labelUpdated = (name: string) =>
  JSON.stringify({
    version: "0",
    id: crypto.randomUUID(),
    "detail-type": "Secret Label Updated",
    source: "aws.secretsmanager",
    account: "123456789012",
    time: new Date().toISOString(),
    region: "us-east-1",
    resources: [ARN(name)],
    detail: { labelUpdated: "AWSCURRENT", versionId: crypto.randomUUID() },
  });
/** A CloudTrail API call event (EventBridge rule on "AWS API Call via CloudTrail"). */
const cloudTrail = (eventName: string, secretId: string) =>
  JSON.stringify({ source: "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail", resources: [], detail: { eventName, requestParameters: { secretId } } });

function spec(name: string): SecretSpec {
  return { name, provider: "aws", inject: { type: "env" }, targets: { containers: [], labels: {} } as never, mappings: {}, rotation: {} as never };
}

function recordingLog() {
  const lines: Array<{ level: string; message: string }> = [];
  const at = (level: string) => (message: string) => void lines.push({ level, message });
  const log: FieldLogger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { log, lines };
}

let sqs: SqsServer;
beforeAll(async () => {
  sqs = await startSqsServer();
});
afterAll(() => sqs.stop());

/** The provider process's side, in process: the SQS consumer plus a counted fingerprint source. */
function harness(queue: string, declared: string[]) {
  const events = createSqsEventQueue(
    { region: "us-east-1", credentials: { accessKeyId: AWS_TEST_ACCESS_KEY_ID, secretAccessKey: "test-secret-key" }, maxAttempts: 1 },
    sqs.queueUrl(queue),
    "aws",
  );
  const versions = new Map(declared.map((n) => [n, "v1"]));
  const checks: string[][] = [];
  let failChecks = false;
  let spareAsked = 0;
  const source: ChangeEventSource = {
    keepSpareFetchReady: () => void spareAsked++,
    async fingerprint(refs: SecretRef[]): Promise<FingerprintItem[]> {
      checks.push(refs.map((r) => r.name));
      if (failChecks) throw new Error("provider down");
      return refs.map((ref) => ({ ref, fingerprint: versions.get(ref.name) ?? "none" }));
    },
    call: (async (method: string, params: any, signal?: AbortSignal) => {
      const s = signal ?? new AbortController().signal;
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
  const { log, lines } = recordingLog();
  const consumer = new ChangeEventConsumer({
    provider: "aws",
    source: () => source,
    store,
    log,
    callTimeoutMs: 7000, // long polls of 2 s: the test ends quickly
    onChanged: (names) => changed.push(names),
    counted: (outcome, n) => void (counts[outcome] = (counts[outcome] ?? 0) + n),
    queueUp: (u) => up.push(u),
    backoffMs: () => 100,
  });
  return {
    consumer, versions, checks, changed, counts, up, lines, events,
    failChecks: (on: boolean) => void (failChecks = on),
    spareAsked: () => spareAsked,
  };
}

async function until(what: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(10);
  }
}

describe("EventBridge messages", () => {
  test("a Secrets Manager event names the secret by ARN and by name", () => {
    expect(secretsOfEventBridge(labelUpdated("db/password")).secrets).toEqual([ARN("db/password"), "db/password"]);
  });
  test("a CloudTrail PutSecretValue names its secretId; a read is not a change", () => {
    expect(secretsOfEventBridge(cloudTrail("PutSecretValue", "api-key")).secrets).toEqual(["api-key"]);
    expect(secretsOfEventBridge(cloudTrail("GetSecretValue", "api-key")).problem).toBe("not_a_secret_change");
  });
  test("malformed, foreign and huge bodies are problems, not exceptions", () => {
    expect(secretsOfEventBridge("{not json").problem).toBe("malformed");
    expect(secretsOfEventBridge(JSON.stringify({ source: "aws.s3", detail: {} })).problem).toBe("not_a_secret_change");
    expect(secretsOfEventBridge(JSON.stringify({ source: "aws.secretsmanager", detail: {}, pad: "x".repeat(70_000) })).problem).toBe("too_large");
  });
});

describe("SQS change events end to end (agent consumer + provider SQS reader)", () => {
  test("an event makes one fingerprint check of the named secret; a real change is delivered with the message deleted after", async () => {
    const h = harness("q-change", ["db/password", "other"]);
    h.consumer.start();
    h.versions.set("db/password", "v2");
    sqs.send("q-change", labelUpdated("db/password"));
    await until(() => h.changed.length > 0);
    expect(h.changed).toEqual([["db/password"]]);
    expect(h.checks).toEqual([["db/password"]]);
    // The consumer asked its provider to keep a spare fetch child (no child start on the change's path).
    expect(h.spareAsked()).toBeGreaterThan(0);
    await until(() => sqs.messages("q-change").length === 0);
    await h.consumer.stop();
  });

  test("1,000 duplicates make one fingerprint check and all 1,000 messages are deleted", async () => {
    const h = harness("q-dup", ["db/password"]);
    for (let i = 0; i < 1000; i++) sqs.send("q-dup", labelUpdated("db/password"));
    h.versions.set("db/password", "v2");
    h.consumer.start();
    await until(() => sqs.messages("q-dup").length === 0, 15_000);
    await h.consumer.stop();
    expect(h.checks.length).toBe(1);
    expect(h.changed).toEqual([["db/password"]]);
    expect(h.counts.checked).toBe(1000);
  });

  test("poison (malformed, huge, foreign) and undeclared secrets are dropped, counted and deleted; a good message behind them still lands", async () => {
    const h = harness("q-poison", ["db/password"]);
    sqs.send("q-poison", "{oops");
    sqs.send("q-poison", "x".repeat(100_000));
    sqs.send("q-poison", JSON.stringify({ source: "aws.ec2", detail: {} }));
    sqs.send("q-poison", labelUpdated("nobody-declared-me"));
    sqs.send("q-poison", labelUpdated("db/password"));
    h.versions.set("db/password", "v2");
    h.consumer.start();
    await until(() => sqs.messages("q-poison").length === 0);
    await h.consumer.stop();
    expect(h.counts).toMatchObject({ malformed: 1, too_large: 1, not_a_secret_change: 1, undeclared: 1, checked: 1 });
    expect(h.checks).toEqual([["db/password"]]);
    expect(h.changed).toEqual([["db/password"]]);
  });

  test("a message whose check failed is not deleted (it comes back after the visibility timeout)", async () => {
    const h = harness("q-keep", ["db/password"]);
    h.failChecks(true);
    sqs.send("q-keep", labelUpdated("db/password"));
    h.consumer.start();
    await until(() => h.checks.length === 1);
    await Bun.sleep(100);
    await h.consumer.stop();
    expect(sqs.messages("q-keep").length).toBe(1);
    expect(sqs.messages("q-keep")[0]!.visibleAt).toBeGreaterThan(Date.now());
  });

  test("queue outage: one warning, the queue gauge goes to 0 and back, errors counted, events flow again after", async () => {
    const h = harness("q-down", ["db/password"]);
    sqs.unavailable = true;
    h.consumer.start();
    await until(() => (h.counts.queue_error ?? 0) >= 3);
    sqs.unavailable = false;
    h.versions.set("db/password", "v2");
    sqs.send("q-down", labelUpdated("db/password"));
    await until(() => h.changed.length > 0);
    await h.consumer.stop();
    expect(h.lines.filter((l) => l.level === "warn").map((l) => l.message)).toEqual(["change-event queue unreachable: polling continues as before"]);
    expect(h.up).toEqual([false, true]);
  });

  test("status reports messages waiting (GetQueueAttributes)", async () => {
    const h = harness("q-status", []);
    sqs.send("q-status", "a");
    sqs.send("q-status", "b");
    expect(await h.events.status(new AbortController().signal)).toEqual({ waiting: 2 });
    h.events.destroy();
  });
});
