import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuotaBucket } from "../../providers/gcp/api.ts";
import { parseGcpSettings } from "../../providers/gcp/config.ts";
import { gcpDescriptor, gcpPollReadsPerMinute } from "../../providers/gcp/descriptor.ts";
import { createGcpClient, gcpProvider } from "../../providers/gcp/index.ts";
import { crc32c } from "../../providers/gcp/secrets.ts";
import { providerBlockProblems } from "../../providers/block-check.ts";
import { encodeFrame, readFrames } from "../../src/rpc/framing.ts";
import { FRAME_LIMITS } from "../../src/rpc/protocol.ts";
import { providerChildEnv, providerCredentials } from "../../src/rpc/provider-env.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { runDso } from "../support/dso-binary.ts";
import { scanProcessMemory } from "../support/memory-scan.ts";
import { legacyItems } from "../support/secret-bytes.ts";
import { startGcpServer, type GcpServer } from "../support/gcp-server.ts";

const REPO = join(import.meta.dir, "../..");
const PLANTED_VALUE = "planted-gcp-db-password-4b7e1d";
const noLog = { debug() {}, info() {}, warn() {}, error() {} };

let server: GcpServer;
let dir: string;
let keyPath: string;

const configure = (config: Record<string, string> = {}, auth?: { method?: string; params?: Record<string, string> }) => ({
  name: "gcp1",
  type: "gcp",
  config: { project: server.project, endpoint: server.url, ...config },
  ...(auth ? { auth } : {}),
});

function gcpProcess(opts: { env?: Record<string, string>; config?: Record<string, string>; auth?: { method?: string; params?: Record<string, string> } } = {}) {
  return new ProviderProcess({
    configure: configure(opts.config, opts.auth),
    env: { PATH: process.env.PATH, HOME: dir, GOOGLE_APPLICATION_CREDENTIALS: keyPath, ...opts.env },
    callTimeoutMs: 30_000,
  });
}

function inProcess(config: Record<string, string> = {}, extra: Parameters<typeof createGcpClient>[2] = {}) {
  const settings = parseGcpSettings(configure(config), { GOOGLE_APPLICATION_CREDENTIALS: keyPath });
  return createGcpClient(settings, { log: noLog, env: {} }, extra);
}

const signal = () => AbortSignal.timeout(20_000);
function resetCalls() {
  for (const key of Object.keys(server.state.calls)) delete server.state.calls[key];
  server.state.requests.length = 0;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-gcp-"));
  server = await startGcpServer();
  keyPath = join(dir, "key.json");
  await writeFile(keyPath, server.serviceAccountKey(), { mode: 0o600 });
  server.state.addVersion("db", JSON.stringify({ username: "app", password: PLANTED_VALUE, port: 5432 }));
  server.state.addVersion("plain", "just a string\n");
  server.state.addVersion("cert", new Uint8Array([0, 1, 2, 250, 255]));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  server.state.throttleNext(0);
  server.state.malformedNext(0);
  server.state.denied.clear();
  server.state.accessDenied.clear();
  server.state.revokeKey = false;
});

describe("gcp provider: configuration", () => {
  const create = (params: Partial<Parameters<typeof gcpProvider.create>[0]>, env: Record<string, string | undefined> = {}) =>
    gcpProvider.create({ name: "gcp1", type: "gcp", config: { project: "my-project" }, ...params }, { log: noLog, env });

  test("project is required and checked; unknown keys are refused with their path", async () => {
    expect(providerBlockProblems(gcpDescriptor, { config: {} })).toEqual([{ path: "config.project", message: "required (the Google Cloud project id, e.g. my-project)" }]);
    expect(providerBlockProblems(gcpDescriptor, { config: { project: "Bad_Project" } })[0]?.message).toContain("project id");
    expect(providerBlockProblems(gcpDescriptor, { config: { project: "123456789012", quota_per_minute: "6000" } })).toEqual([]);
    await expect(create({ config: { project: "my-project", vault_url: "x" } })).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("providers.gcp1.config.vault_url") });
    expect(gcpDescriptor.configWarnings?.({ endpoint: "http://sm.example.com" })[0]?.key).toBe("endpoint");
    expect(gcpDescriptor.configWarnings?.({ endpoint: "http://127.0.0.1:9" })).toEqual([]);
  });

  test("a key file is required for service_account_key, must be a service-account key, and is never echoed", async () => {
    await expect(create({ auth: { method: "service_account_key" } })).rejects.toMatchObject({ message: expect.stringContaining("providers.gcp1.auth.params.key_file") });
    const notJson = join(dir, "not-json");
    await writeFile(notJson, "PLANTED-NOT-A-KEY");
    const error = await create({ auth: { method: "service_account_key", params: { key_file: notJson } } }).catch((e) => e);
    expect(error).toMatchObject({ code: "CONFIG_INVALID", message: "providers.gcp1.auth.params.key_file: the credentials file is not JSON" });
    await expect(create({}, { GOOGLE_APPLICATION_CREDENTIALS: join(dir, "missing.json") })).rejects.toMatchObject({ message: expect.stringContaining("GOOGLE_APPLICATION_CREDENTIALS: cannot read") });
  });

  test("an external_account file without a subject-token source is refused naming the field; the method needs a file of its type", async () => {
    const external = join(dir, "external.json");
    await writeFile(external, JSON.stringify({ type: "external_account", audience: "//iam.googleapis.com/x", subject_token_type: "urn:ietf:params:oauth:token-type:jwt", token_url: "https://sts.googleapis.com/v1/token" }));
    await expect(create({}, { GOOGLE_APPLICATION_CREDENTIALS: external })).rejects.toMatchObject({
      code: "CONFIG_INVALID",
      message: "GOOGLE_APPLICATION_CREDENTIALS: external_account credential_source: is missing",
    });
    await expect(create({ auth: { method: "external_account" } })).rejects.toMatchObject({ message: expect.stringContaining("providers.gcp1.auth.params.key_file: external_account needs a credentials file") });
    await expect(create({ auth: { method: "external_account", params: { key_file: keyPath } } })).rejects.toMatchObject({ message: expect.stringContaining("auth.method external_account needs an external_account file") });
  });

  test("the metadata server is the default without a key; GCE_METADATA_HOST overrides it", () => {
    expect(parseGcpSettings({ name: "g", type: "gcp", config: { project: "my-project" } }, {}).auth).toEqual({ method: "metadata", metadataHost: "metadata.google.internal" });
    expect(parseGcpSettings({ name: "g", type: "gcp", config: { project: "my-project" }, auth: { method: "metadata" } }, { GCE_METADATA_HOST: "127.0.0.1:8080" }).auth).toEqual({ method: "metadata", metadataHost: "127.0.0.1:8080" });
  });

  test("the child inherits only the key's path and the metadata host; no credential travels through env", () => {
    const agentEnv = { PATH: "/bin", GOOGLE_APPLICATION_CREDENTIALS: "/etc/dso/key.json", GCE_METADATA_HOST: "169.254.169.254", GOOGLE_API_KEY: "planted-api-key", CLOUDSDK_AUTH_ACCESS_TOKEN: "ya29.planted", AWS_SECRET_ACCESS_KEY: "planted" };
    expect(providerChildEnv("gcp", agentEnv)).toEqual({ PATH: "/bin", GOOGLE_APPLICATION_CREDENTIALS: "/etc/dso/key.json", GCE_METADATA_HOST: "169.254.169.254" });
    expect(providerCredentials("gcp", agentEnv)).toEqual({});
  });

  test("poll budget: 1,000 secrets every 5 min are 200 reads a minute, 300 every 30 s are 600", () => {
    expect(gcpPollReadsPerMinute(1000, 300_000)).toBe(200);
    expect(gcpPollReadsPerMinute(300, 30_000)).toBe(600);
  });
});

describe("gcp provider: the real `dso provider gcp` child against the local Secret Manager", () => {
  let p: ProviderProcess;
  beforeAll(() => {
    p = gcpProcess();
  });
  afterAll(() => p.stop());

  test("fetch shapes JSON keys, text and binary; a missing secret fails only itself; reads are pinned to a number", async () => {
    resetCalls();
    const items = legacyItems(await p.fetch([{ name: "db" }, { name: "plain" }, { name: "cert" }, { name: "nope" }, { name: "db" }]));
    expect(items[0]?.value).toEqual({ data: { username: "app", password: PLANTED_VALUE, port: "5432" }, encoding: "utf8" });
    expect(items[0]?.version).toBe("1");
    expect(items[1]?.value).toEqual({ data: { value: "just a string\n" }, encoding: "utf8" });
    expect(items[2]?.value).toEqual({ data: { value: Buffer.from([0, 1, 2, 250, 255]).toString("base64") }, encoding: "base64" });
    expect(items[3]?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: 'provider gcp1 (gcp): secret "nope": not found' });
    expect(items[4]?.value).toEqual(items[0]!.value!);
    expect(server.state.calls.token).toBe(1);
    expect(server.state.requests.filter((r) => r.endsWith(":access")).sort()).toEqual([
      `/v1/projects/${server.project}/secrets/cert/versions/1:access`,
      `/v1/projects/${server.project}/secrets/db/versions/1:access`,
      `/v1/projects/${server.project}/secrets/plain/versions/1:access`,
    ]);
  });

  test("fingerprint reads metadata only and sees a new version; a fetch after it reads that number", async () => {
    const before = await p.fingerprint([{ name: "db" }, { name: "plain" }]);
    resetCalls();
    const n = server.state.addVersion("db", JSON.stringify({ username: "app", password: "rotated-gcp-pw" }));
    const after = await p.fingerprint([{ name: "db" }, { name: "plain" }]);
    expect(after[0]?.fingerprint).toStartWith(`v${n}@`);
    expect(after[0]?.fingerprint).not.toBe(before[0]!.fingerprint!);
    expect(after[1]?.fingerprint).toBe(before[1]!.fingerprint!);
    expect(server.state.calls).toEqual({ get: 2 });
    const [fetched] = legacyItems(await p.fetch([{ name: "db" }]));
    expect(fetched?.fingerprint).toBe(after[0]!.fingerprint!);
    expect(fetched?.value?.data.password).toBe("rotated-gcp-pw");
  });

  test("after polls and a fetch, the long-lived process holds no copy of the value (memory scan; positive control: the secret's id)", async () => {
    const id = "memscan-planted-id-7c1e";
    const value = "memscan-planted-value-93fd0a";
    server.state.addVersion(id, value);
    await p.fingerprint([{ name: id }]);
    expect(legacyItems(await p.fetch([{ name: id }]))[0]?.value?.data.value).toBe(value);
    server.state.addVersion(id, `${value}-2`);
    await p.fingerprint([{ name: id }]);
    const scan = scanProcessMemory(p.getStatus().pid!, [{ label: "id", value: id }, { label: "value", value }]);
    const total = (label: string) => (scan.counts.get(label)?.latin1 ?? 0) + (scan.counts.get(label)?.utf16 ?? 0);
    expect(total("id")).toBeGreaterThan(0);
    expect(total("value")).toBe(0);
  });

  test("health lists one secret", async () => {
    resetCalls();
    expect(await p.health()).toEqual({ ok: true });
    expect(server.state.calls.listSecrets).toBe(1);
  });
});

describe("gcp provider: versions, names and permissions (client in process)", () => {
  let c: ReturnType<typeof inProcess>;
  beforeAll(() => {
    c = inProcess();
  });

  test("a disabled or destroyed latest falls back to the newest enabled version; none enabled is not found", async () => {
    server.state.addVersion("roll", "one");
    server.state.addVersion("roll", "two");
    const three = server.state.addVersion("roll", "three");
    const [first] = await c.fingerprint([{ name: "roll" }], signal());
    expect(first?.fingerprint).toStartWith("v3@");
    server.state.setState("roll", three, "DISABLED");
    const [disabled] = await c.fingerprint([{ name: "roll" }], signal());
    expect(disabled?.fingerprint).toStartWith("v2@");
    expect(legacyItems(await c.fetch([{ name: "roll" }], signal()))[0]?.value?.data.value).toBe("two");
    server.state.setState("roll", 2, "DESTROYED");
    expect((await c.fingerprint([{ name: "roll" }], signal()))[0]?.fingerprint).toStartWith("v1@");
    server.state.setState("roll", 1, "DISABLED");
    const [none] = await c.fingerprint([{ name: "roll" }], signal());
    expect(none?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: 'provider gcp1 (gcp): secret "roll": no enabled version (the newest is disabled)' });
    // Pinned: an enabled version is read; a disabled one is not found, in polling and fetching.
    server.state.setState("roll", three, "ENABLED");
    expect(legacyItems(await c.fetch([{ name: "roll", version: "3" }], signal()))[0]?.value?.data.value).toBe("three");
    const [pinned] = await c.fingerprint([{ name: "roll", version: "1" }], signal());
    expect(pinned?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: expect.stringContaining("version 1 is disabled") });
    expect(legacyItems(await c.fetch([{ name: "roll", version: "2" }], signal()))[0]?.error?.code).toBe("SECRET_NOT_FOUND");
  });

  test("a full resource name reaches the named project; stages are refused", async () => {
    server.state.addVersion("shared", "from another project", "other-project-1");
    const items = legacyItems(await c.fetch([{ name: "projects/other-project-1/secrets/shared" }, { name: "db", stage: "prod" }], signal()));
    expect(items[0]?.value?.data.value).toBe("from another project");
    expect(items[1]?.error).toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("versions, not stages") });
  });

  test("a viewer without secretAccessor polls but cannot fetch; a denied secret fails alone", async () => {
    server.state.accessDenied.add("plain");
    server.state.denied.add("cert");
    const fingerprints = await c.fingerprint([{ name: "plain" }, { name: "cert" }, { name: "db" }], signal());
    expect(fingerprints[0]?.fingerprint).toBeDefined();
    expect(fingerprints[1]?.error).toMatchObject({ code: "PROVIDER_AUTH", message: expect.stringContaining("roles/secretmanager.viewer") });
    expect(fingerprints[2]?.fingerprint).toBeDefined();
    const items = legacyItems(await c.fetch([{ name: "plain" }, { name: "db" }], signal()));
    expect(items[0]?.error?.code).toBe("PROVIDER_AUTH");
    expect(items[1]?.value).toBeDefined();
  });
});

describe("gcp provider: auth", () => {
  test("the metadata server's token is used (with Metadata-Flavor: Google); a request without the header is refused", async () => {
    resetCalls();
    const p = gcpProcess({ env: { GOOGLE_APPLICATION_CREDENTIALS: "", GCE_METADATA_HOST: server.metadataHost }, auth: { method: "metadata" } });
    try {
      expect((await p.fingerprint([{ name: "plain" }]))[0]?.fingerprint).toBeDefined();
      expect(server.state.calls.metadataToken).toBe(1);
      expect(server.state.calls.token).toBeUndefined();
    } finally {
      await p.stop();
    }
    const bare = await fetch(`http://${server.metadataHost}/computeMetadata/v1/instance/service-accounts/default/token`);
    expect(bare.status).toBe(403);
  });

  test("a revoked key is PROVIDER_AUTH for the whole call, without key or token in the message", async () => {
    server.state.revokeKey = true;
    const client = inProcess();
    const error = await client.fingerprint([{ name: "db" }, { name: "plain" }], signal()).catch((e) => e);
    expect(String(error.message)).not.toContain("PRIVATE KEY");
    expect(error).toMatchObject({ code: "PROVIDER_AUTH", message: expect.stringContaining("provider gcp1 (gcp): the OAuth token endpoint refused (HTTP 400)") });
    expect(server.state.calls.token).toBeGreaterThanOrEqual(1);
  });

  test("an access token the service stops accepting is renewed once", async () => {
    const client = inProcess();
    expect((await client.fingerprint([{ name: "db" }], signal()))[0]?.fingerprint).toBeDefined();
    server.state.acceptedTokens.clear();
    resetCalls();
    expect((await client.fingerprint([{ name: "db" }], signal()))[0]?.fingerprint).toBeDefined();
    expect(server.state.calls).toMatchObject({ unauthenticated: 1, token: 1, get: 1 });
  });
});

describe("gcp provider: throttling and quota", () => {
  test("a 429 is ridden out after its Retry-After; a sustained one is PROVIDER_THROTTLED with that wait", async () => {
    const client = inProcess();
    await client.health(signal());
    server.state.throttleNext(1, 1);
    const started = Date.now();
    expect((await client.fingerprint([{ name: "db" }], signal()))[0]?.fingerprint).toBeDefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    server.state.throttleNext(100, 30);
    const error = await client.fingerprint([{ name: "db" }], signal()).catch((e) => e);
    expect(error).toMatchObject({ code: "PROVIDER_THROTTLED", retryAfterMs: 30_000 });
  });

  test("the quota bucket refills evenly at 90 % of the quota", async () => {
    let now = 0;
    const bucket = new QuotaBucket(600, () => now);
    expect(bucket.perMinute).toBe(540);
    for (let i = 0; i < 540; i++) expect(await bucket.take(0, signal())).toBe(true);
    expect(await bucket.take(0, signal())).toBe(false);
    expect(bucket.waitMs()).toBe(112);
    now += 1000;
    expect(await bucket.take(0, signal())).toBe(true);
  });

  test("a poll beyond the quota checks the least recently checked first and keeps the others' last fingerprint", async () => {
    for (let i = 0; i < 12; i++) server.state.addVersion(`q${i}`, `v${i}`);
    let now = 0;
    const quota = new QuotaBucket(10, () => now);
    const client = inProcess({}, { quota, quotaWaitMs: 0 });
    const refs = Array.from({ length: 12 }, (_, i) => ({ name: `q${i}` }));
    resetCalls();
    const first = await client.fingerprint(refs, signal());
    expect(first.filter((i) => i.fingerprint).length).toBe(9);
    expect(first.filter((i) => i.error?.code === "PROVIDER_THROTTLED").length).toBe(3);
    expect(server.state.calls.get).toBe(9);
    now += 60_000;
    server.state.addVersion("q0", "changed");
    const second = await client.fingerprint(refs, signal());
    expect(server.state.calls.get).toBe(18);
    // The three never checked came first; q0 was among the six re-checked after them.
    expect(second.every((i) => i.fingerprint)).toBe(true);
    expect(second[0]?.fingerprint).toStartWith("v2@");
  });
});

describe("gcp provider: replies it must not trust", () => {
  test("a payload that fails its dataCrc32c and a reply that is not JSON are errors, never values", async () => {
    const client = inProcess();
    server.state.malformedNext(1);
    const [notJson] = await client.fingerprint([{ name: "plain" }], signal());
    expect(notJson?.error).toMatchObject({ code: "PROVIDER_UNAVAILABLE", message: expect.stringContaining("not a JSON object") });
    const corrupt = JSON.stringify({ name: `projects/${server.projectNumber}/secrets/plain/versions/1`, payload: { data: Buffer.from("hellp").toString("base64"), dataCrc32c: String(crc32c(new TextEncoder().encode("hello"))) } });
    server.state.malformedNext(1, corrupt, ":access");
    const [bad] = await client.fetch([{ name: "plain" }], signal());
    expect(bad?.value).toBeUndefined();
    expect(String(bad?.error?.message)).not.toContain("hellp");
    expect(bad?.error).toMatchObject({ code: "PROVIDER_UNAVAILABLE", message: expect.stringContaining("dataCrc32c") });
    const [good] = await client.fetch([{ name: "plain" }], signal());
    expect(good?.value?.data.value).toBe("just a string\n");
  });
});

describe("gcp provider: no secret in the child's logs", () => {
  test("a poll, a fetch and a failed fetch leave no value, key or token on stderr", async () => {
    server.state.addVersion("logscan", JSON.stringify({ password: PLANTED_VALUE }));
    const child = Bun.spawn([process.execPath, join(REPO, "src/main.ts"), "provider", "gcp"], {
      cwd: REPO,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "", HOME: dir, DSO_LOG_LEVEL: "debug", GOOGLE_APPLICATION_CREDENTIALS: keyPath },
    });
    const send = (id: number, method: string, params?: unknown) => {
      child.stdin.write(encodeFrame({ id, method, ...(params ? { params } : {}) }));
      child.stdin.flush();
    };
    const frames = readFrames(child.stdout, FRAME_LIMITS);
    const next = async () => (await frames.next()).value?.value as Record<string, any>;
    try {
      expect((await next()).type).toBe("hello");
      send(1, "configure", configure());
      expect((await next()).result).toEqual({ ok: true });
      send(2, "fingerprint", { refs: [{ name: "logscan" }, { name: "nope" }] });
      expect((await next()).result.items[0].fingerprint).toBeDefined();
      send(3, "fetch", { refs: [{ name: "logscan" }] });
      const frame = (await frames.next()).value as { value: any; raw?: Uint8Array };
      expect(JSON.stringify(frame.value)).not.toContain(PLANTED_VALUE);
      expect(Buffer.from(frame.raw!).toString()).toContain(PLANTED_VALUE);
      server.state.revokeKey = true;
      server.state.acceptedTokens.clear();
      send(4, "fetch", { refs: [{ name: "logscan" }] });
      expect((await next()).error.code).toBe("PROVIDER_AUTH");
      send(5, "shutdown");
      expect((await next()).id).toBe(5);
      await child.exited;
      const stderr = await new Response(child.stderr).text();
      expect(stderr).toContain("gcp poll");
      expect(stderr).not.toContain(PLANTED_VALUE);
      expect(stderr).not.toContain("PRIVATE KEY");
      expect(stderr).not.toContain("ya29.");
    } finally {
      child.kill();
    }
  });
});

describe("gcp provider: the compiled binary's config checks", () => {
  test("dso config validate names a bad gcp value with its dso.yaml line (the doctor quota check: test/doctor/poll-quota.test.ts)", async () => {
    const env = { PATH: process.env.PATH, DOCKER_HOST: `unix://${dir}/none.sock` };
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "version: 2\nproviders:\n  g:\n    type: gcp\n    config:\n      project: Not_A_Project\n      endpoint: http://sm.example.com\nsecrets: []\n");
    const validate = await runDso(["config", "validate", "--config", bad], { env });
    expect(validate.code).toBe(1);
    expect(validate.stderr).toContain("bad.yaml:6: providers.g.config.project");
    expect(validate.stderr).toContain("providers.g.config.project: must be a Google Cloud project id");
  });
});
