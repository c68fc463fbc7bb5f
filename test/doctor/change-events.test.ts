// `dso doctor`'s change-event check: the queue is read by the real aws provider process (with the
// credentials the agent would pass) against test/support/sqs-server.ts.
// full tier: checkChangeEvents spawns the aws provider process.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { DsoConfig, ProviderConfig } from "../../src/config/types.ts";
import { checkChangeEvents } from "../../src/doctor/change-events.ts";
import { AWS_TEST_ACCESS_KEY_ID } from "../support/aws-server.ts";
import { startSqsServer, type SqsServer } from "../support/sqs-server.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGcpServer, type GcpServer } from "../support/gcp-server.ts";

let sqs: SqsServer;
let gcp: GcpServer;
let keyDir: string;
beforeAll(async () => {
  [sqs, gcp] = await Promise.all([startSqsServer(), startGcpServer()]);
  keyDir = mkdtempSync(join(tmpdir(), "dso-doctor-gcp-"));
  writeFileSync(join(keyDir, "key.json"), gcp.serviceAccountKey(), { mode: 0o600 });
});
afterAll(async () => {
  await Promise.all([sqs.stop(), gcp.stop()]);
  rmSync(keyDir, { recursive: true, force: true });
});

const env = { PATH: process.env.PATH, AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "doctor-test-key" };
function config(queue: string): DsoConfig {
  const provider: ProviderConfig = { name: "cloud", type: "aws", region: "us-east-1", auth: { params: {} }, config: {}, retry: { attempts: 1, backoffMs: 100 }, allowUndeclared: false, events: { queue, maxAgeMs: 300_000 } };
  return { providers: { cloud: provider } } as unknown as DsoConfig;
}

describe("dso doctor: change events", () => {
  test("a readable queue is ok with its waiting count; an unknown queue fails naming the cause", async () => {
    sqs.send("doctor-q", "x");
    const [ok] = await checkChangeEvents(config(sqs.queueUrl("doctor-q")), env);
    expect(ok).toEqual({ check: "change events (cloud)", status: "ok", detail: "queue readable with the provider's credentials, 1 waiting" });
    const [bad] = await checkChangeEvents(config(`${sqs.url}/123456789012/no-such-queue`), env);
    expect(bad!.status).toBe("fail");
    expect(bad!.detail).toContain("queue not readable");
    expect(bad!.detail).not.toContain("doctor-test-key");
  });

  test("a message older than events.max_age warns that nothing consumes the queue", async () => {
    const [old] = await checkChangeEvents(config("https://q"), env, async () => ({ waiting: 3, oldestAgeSeconds: 900 }));
    expect(old!.status).toBe("warn");
    expect(old!.detail).toContain("15m old");
  });

  test("gcp: a Pub/Sub subscription is peeked with the provider's token: ok, old message warns, denied fails naming the role", async () => {
    const gcpEnv = { PATH: process.env.PATH, GOOGLE_APPLICATION_CREDENTIALS: join(keyDir, "key.json") };
    const gcpConfig = (subscription: string): DsoConfig => {
      const provider: ProviderConfig = { name: "gsm", type: "gcp", auth: { params: {} }, config: { project: gcp.project, endpoint: gcp.url, pubsub_endpoint: gcp.url }, retry: { attempts: 1, backoffMs: 100 }, allowUndeclared: false, events: { queue: subscription, maxAgeMs: 300_000 } };
      return { providers: { gsm: provider } } as unknown as DsoConfig;
    };
    const sub = gcp.state.pubsub.createSubscription("doctor-sub");
    const [ok] = await checkChangeEvents(gcpConfig(sub), gcpEnv);
    expect(ok).toEqual({ check: "change events (gsm)", status: "ok", detail: "queue readable with the provider's credentials, none seen waiting" });
    gcp.state.pubsub.publish(sub, { data: { name: "x" }, attributes: { eventType: "SECRET_VERSION_ADD", secretId: "projects/p/secrets/x" }, publishTime: new Date(Date.now() - 20 * 60_000).toISOString() });
    const [old] = await checkChangeEvents(gcpConfig(sub), gcpEnv);
    expect(old!.status).toBe("warn");
    expect(old!.detail).toContain("20m old");
    expect(gcp.state.pubsub.unacked(sub)).toBe(1);
    gcp.state.pubsub.createSubscription("doctor-denied");
    gcp.state.pubsub.denied.add("doctor-denied");
    const [denied] = await checkChangeEvents(gcpConfig(`projects/${gcp.project}/subscriptions/doctor-denied`), gcpEnv);
    expect(denied!.status).toBe("fail");
    expect(denied!.detail).toContain("roles/pubsub.subscriber");
  });
});
