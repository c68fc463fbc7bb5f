// Change detection by push, Azure path: Event Grid events in an Azure Storage queue, served by
// Azurite (the open-source Azure Storage server, run with node once for this file), read by the
// azure provider's queue reader (real @azure/storage-queue) and the agent-side consumer
// (watcher/event-queue.ts) with a real SecretStore. Azurite takes Shared Key, not Entra tokens
// over http, so the QueueClient of most cases is built with the emulator's well-known account key.
// The last describe runs the provider's own path: the real `dso provider azure` child builds its
// QueueClient with its ClientSecretCredential, gets a Storage token from the local Entra endpoint
// (test/support/azure-server.ts) and reads Azurite started with `--oauth basic` over HTTPS.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { QueueServiceClient, StorageSharedKeyCredential, QueueClient } from "@azure/storage-queue";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStorageQueueEvents, secretsOfEventGrid } from "../../providers/azure/events.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { startAzureServer, STORAGE_RESOURCE, type AzureServer } from "../support/azure-server.ts";
import type { SecretSpec } from "../../src/config/types.ts";
import type { FieldLogger } from "../../src/log/logger.ts";
import type { FingerprintItem, SecretRef } from "../../src/rpc/protocol.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { ChangeEventConsumer, type ChangeEventSource } from "../../src/watcher/event-queue.ts";

const ACCOUNT = "devstoreaccount1";
// Azurite's published development key (docs: "Authorization for tools and SDKs"), not a secret.
const ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
let azurite: ReturnType<typeof Bun.spawn>;
let dir: string;
let service: QueueServiceClient;

/** Azurite's queue service on a free port (node, in memory); `extra`: e.g. HTTPS and OAuth flags. */
async function startAzurite(cwd: string, extra: string[] = []): Promise<{ process: ReturnType<typeof Bun.spawn>; port: number }> {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  const main = join(import.meta.dir, "../../node_modules/azurite/dist/src/queue/main.js");
  const process = Bun.spawn(["node", main, "--queueHost", "127.0.0.1", "--queuePort", String(port), "--inMemoryPersistence", "--silent", "--skipApiVersionCheck", ...extra], { cwd, stdout: "ignore", stderr: "ignore" });
  return { process, port };
}

async function untilUp(probe: () => Promise<unknown>): Promise<void> {
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      await probe();
      return;
    } catch (error) {
      if (Date.now() > end) throw error;
      await Bun.sleep(100);
    }
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-azurite-"));
  const started = await startAzurite(dir);
  azurite = started.process;
  const url = `http://127.0.0.1:${started.port}/${ACCOUNT}`;
  service = new QueueServiceClient(url, new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY), { retryOptions: { maxTries: 1 } });
  await untilUp(() => service.getProperties());
});

afterAll(async () => {
  azurite?.kill("SIGKILL");
  await azurite?.exited;
  await rm(dir, { recursive: true, force: true });
});

/** What Event Grid writes to the queue for a new Key Vault secret version (Event Grid schema, base64). */
function keyVaultEvent(name: string, type = "Microsoft.KeyVault.SecretNewVersionCreated"): string {
  const event = {
    id: crypto.randomUUID(),
    topic: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
    subject: name,
    eventType: type,
    data: { Id: `https://kv.vault.azure.net/secrets/${name}/0123456789abcdef`, VaultName: "kv", ObjectType: "Secret", ObjectName: name, Version: "0123456789abcdef", NBF: null, EXP: null },
    dataVersion: "1",
    metadataVersion: "1",
    eventTime: new Date().toISOString(),
  };
  return Buffer.from(JSON.stringify(event)).toString("base64");
}

function spec(name: string): SecretSpec {
  return { name, provider: "kv", inject: { type: "env" }, targets: {} as never, mappings: {}, rotation: {} as never };
}

async function harness(queueName: string, declared: string[], queue?: QueueClient) {
  const client = queue ?? service.getQueueClient(queueName);
  if (!queue) await client.createIfNotExists();
  const events = createStorageQueueEvents(client, "kv");
  const versions = new Map(declared.map((n) => [n, "v1"]));
  const checks: string[][] = [];
  const source: ChangeEventSource = {
    async fingerprint(refs: SecretRef[]): Promise<FingerprintItem[]> {
      checks.push(refs.map((r) => r.name));
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
  const warnings: string[] = [];
  const log: FieldLogger = { debug() {}, info() {}, warn: (m) => void warnings.push(m), error() {} };
  const consumer = new ChangeEventConsumer({
    provider: "kv",
    source: () => source,
    store,
    log,
    callTimeoutMs: 7000,
    onChanged: (names) => changed.push(names),
    counted: (outcome, n) => void (counts[outcome] = (counts[outcome] ?? 0) + n),
    backoffMs: () => 100,
  });
  return { client, events, consumer, versions, checks, changed, counts, warnings };
}

async function until(what: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}

const empty = (q: QueueClient) => async () => ((await q.getProperties()).approximateMessagesCount ?? 0) === 0;

describe("Event Grid messages", () => {
  test("a SecretNewVersionCreated event (base64, Event Grid schema or CloudEvents) names the secret", () => {
    expect(secretsOfEventGrid(keyVaultEvent("db-password")).secrets).toEqual(["db-password"]);
    const cloudEvent = JSON.stringify({ specversion: "1.0", type: "Microsoft.KeyVault.SecretNewVersionCreated", source: "/x", id: "1", subject: "api-key", data: { ObjectName: "api-key" } });
    expect(secretsOfEventGrid(cloudEvent).secrets).toEqual(["api-key"]);
    expect(secretsOfEventGrid(keyVaultEvent("db-password", "Microsoft.KeyVault.SecretNearExpiry")).problem).toBe("not_a_secret_change");
    expect(secretsOfEventGrid("!!!not base64 json").problem).toBe("malformed");
  });
});

describe("Azure Storage queue change events (Azurite)", () => {
  test("an event makes one check of the named secret (underscore names match Key Vault's dashes); the message is deleted after", async () => {
    const h = await harness("q-change", ["db_password", "other"]);
    h.versions.set("db_password", "v2");
    await h.client.sendMessage(keyVaultEvent("db-password"));
    h.consumer.start();
    await until(() => h.changed.length > 0);
    expect(h.changed).toEqual([["db_password"]]);
    expect(h.checks).toEqual([["db_password"]]);
    await until(empty(h.client));
    await h.consumer.stop();
  });

  test("100 duplicates make one fingerprint check; poison and undeclared are counted and deleted", async () => {
    const h = await harness("q-burst", ["db-password"]);
    await Promise.all(Array.from({ length: 100 }, () => h.client.sendMessage(keyVaultEvent("db-password"))));
    await h.client.sendMessage(Buffer.from("{oops").toString("base64"));
    await h.client.sendMessage(Buffer.from(JSON.stringify({ eventType: "Microsoft.KeyVault.SecretNewVersionCreated", subject: "x", pad: "y".repeat(30_000) })).toString("base64"));
    await h.client.sendMessage(keyVaultEvent("nobody-declared-me"));
    h.versions.set("db-password", "v2");
    h.consumer.start();
    await until(empty(h.client), 15_000);
    await h.consumer.stop();
    expect(h.checks.length).toBe(1);
    expect(h.changed).toEqual([["db-password"]]);
    expect(h.counts).toMatchObject({ checked: 100, malformed: 1, too_large: 1, undeclared: 1 });
  });

  test("status: messages waiting and the oldest one's age (dso doctor)", async () => {
    const h = await harness("q-status", []);
    await h.client.sendMessage(keyVaultEvent("a"));
    const status = await h.events.status(new AbortController().signal);
    expect(status.waiting).toBe(1);
    expect(status.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
  });

  test("queue down: one warning, errors counted, the consumer keeps trying", async () => {
    const dead = new QueueClient("http://127.0.0.1:9/devstoreaccount1/nope", new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY), { retryOptions: { maxTries: 1 } });
    const h = await harness("unused", ["db-password"], dead);
    h.consumer.start();
    await until(() => (h.counts.queue_error ?? 0) >= 3);
    await h.consumer.stop();
    expect(h.warnings).toEqual(["change-event queue unreachable: polling continues as before"]);
  });
});

describe("the provider's own token credential against Azurite in OAuth mode (HTTPS)", () => {
  let entra: AzureServer;
  let oauthAzurite: ReturnType<typeof Bun.spawn>;
  let queueUrl: string;
  /** The test's own requests: Bun's fetch trusting the test certificate. */
  const send = (url: string, init: RequestInit & { token?: string } = {}) =>
    fetch(url, { ...init, headers: { "x-ms-version": "2025-01-05", ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) }, tls: { ca: entra.certPem } } as RequestInit);

  beforeAll(async () => {
    entra = await startAzureServer();
    const started = await startAzurite(dir, ["--oauth", "basic", "--cert", entra.certPath, "--key", entra.keyPath]);
    oauthAzurite = started.process;
    queueUrl = `https://127.0.0.1:${started.port}/${ACCOUNT}/q-oauth`;
    await untilUp(async () => {
      const r = await send(`https://127.0.0.1:${started.port}/${ACCOUNT}?comp=list`);
      if (r.status >= 500) throw new Error(`azurite: ${r.status}`);
    });
  });

  afterAll(async () => {
    oauthAzurite?.kill("SIGKILL");
    await oauthAzurite?.exited;
    await entra?.stop();
  });

  /** A Storage token from the local Entra endpoint, as the provider's credential gets one. */
  async function storageToken(): Promise<string> {
    const form = new URLSearchParams({ grant_type: "client_credentials", client_id: entra.clientId, client_secret: entra.clientSecret, scope: `${STORAGE_RESOURCE}/.default` });
    const r = await fetch(`${entra.authorityHost}/${entra.tenantId}/oauth2/v2.0/token`, { method: "POST", body: form, tls: { ca: entra.certPem } } as RequestInit);
    return ((await r.json()) as { access_token: string }).access_token;
  }

  test("`dso provider azure` reads and deletes the queue's messages with its client-secret credential; no token, no access", async () => {
    const token = await storageToken();
    expect((await send(queueUrl, { method: "PUT", token })).status).toBe(201);
    // Azurite checks the bearer token: without one the queue is closed (the test is not passing by anonymous access).
    expect((await send(`${queueUrl}/messages`, { method: "POST", body: "<QueueMessage><MessageText>x</MessageText></QueueMessage>" })).status).toBeGreaterThanOrEqual(400);
    const post = await send(`${queueUrl}/messages`, { method: "POST", token, body: `<QueueMessage><MessageText>${keyVaultEvent("db-password")}</MessageText></QueueMessage>` });
    expect(post.status).toBe(201);
    const storageTokensBefore = entra.state.calls.token_storage ?? 0;

    const provider = new ProviderProcess({
      configure: {
        name: "kv",
        type: "azure",
        auth: { method: "client_secret", params: { tenant_id: entra.tenantId, client_id: entra.clientId } },
        config: { vault_url: entra.url, authority_host: entra.authorityHost, disable_challenge_resource_verification: "true" },
        events: { queue: queueUrl },
      },
      env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: entra.certPath, AZURE_CLIENT_SECRET: entra.clientSecret },
    });
    try {
      const { messages } = await provider.call("events", { waitSeconds: 0 });
      expect(messages.map((m) => m.secrets)).toEqual([["db-password"]]);
      expect(entra.state.calls.token_storage ?? 0).toBe(storageTokensBefore + 1);
      await provider.call("events_done", { receipts: messages.map((m) => m.receipt) });
      expect(await provider.call("events_status", {})).toEqual({ waiting: 0 });
    } finally {
      await provider.stop();
    }
  }, 30_000);
});
