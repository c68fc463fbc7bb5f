import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { awsProvider } from "../../providers/aws/index.ts";
import { selectVersion } from "../../providers/aws/metadata.ts";
import { decodeSecretValue } from "../../providers/aws/values.ts";
import { encodeFrame, readFrames } from "../../src/rpc/framing.ts";
import { FRAME_LIMITS } from "../../src/rpc/protocol.ts";
import { valuesFromWire } from "../../src/rpc/wire-values.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer, type AwsServer } from "../support/aws-server.ts";

const REPO = join(import.meta.dir, "../..");
const PLANTED_KEY = "planted-AWS-secret-key/0123456789abcdefXYZ";
const PLANTED_VALUE = "planted-db-password-7f3a9c";
const noLog = { debug() {}, info() {}, warn() {}, error() {} };

let server: AwsServer;
let home: string;

/** What the agent would have in its environment; credentials reach the child only via configure. */
function agentEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: home,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: PLANTED_KEY,
    ...extra,
  };
}

function awsProcess(opts: { endpoint?: string; config?: Record<string, string>; env?: Record<string, string | undefined>; auth?: { method?: string } } = {}) {
  return new ProviderProcess({
    configure: {
      name: "prod",
      type: "aws",
      region: "us-east-1",
      ...(opts.auth ? { auth: opts.auth } : {}),
      config: { endpoint: opts.endpoint ?? server.url, ...opts.config },
    },
    env: opts.env ?? agentEnv(),
    callTimeoutMs: 30_000,
  });
}

const valueCalls = () => (server.state.calls.GetSecretValue ?? 0) + (server.state.calls.BatchGetSecretValue ?? 0);
function resetCalls() {
  for (const key of Object.keys(server.state.calls)) delete server.state.calls[key];
}

/**
 * A pass-through in front of the emulator for faults it lacks: AccessDenied on chosen
 * operations (least-privilege IAM policies) and throttling answers carrying Retry-After.
 */
function startFaultProxy(target: string) {
  const faults = { deny: new Set<string>(), throttle: 0, retryAfterSeconds: undefined as number | undefined, seen: {} as Record<string, number> };
  const proxy = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    async fetch(req) {
      const op = (req.headers.get("x-amz-target") ?? "").replace("secretsmanager.", "");
      faults.seen[op] = (faults.seen[op] ?? 0) + 1;
      const error = (code: string) =>
        new Response(JSON.stringify({ __type: code, message: "denied by test proxy" }), {
          status: 400,
          headers: {
            "content-type": "application/x-amz-json-1.1",
            "x-amzn-errortype": code,
            ...(faults.retryAfterSeconds !== undefined && code === "ThrottlingException" ? { "retry-after": String(faults.retryAfterSeconds) } : {}),
          },
        });
      if (faults.deny.has(op)) return error("AccessDeniedException");
      if (faults.throttle > 0) {
        faults.throttle--;
        return error("ThrottlingException");
      }
      const headers = new Headers(req.headers);
      headers.delete("host");
      const upstream = await fetch(target, { method: req.method, headers, body: await req.arrayBuffer() });
      return new Response(await upstream.arrayBuffer(), { status: upstream.status, headers: upstream.headers });
    },
  });
  return { url: `http://127.0.0.1:${proxy.port}`, faults, stop: () => proxy.stop(true) };
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "dso-aws-home-"));
  server = await startAwsServer();
  server.state.putSecret("db", JSON.stringify({ username: "app", password: PLANTED_VALUE, port: 5432, opts: { tls: true } }), {
    tags: { team: "payments" },
  });
  server.state.putSecret("plain", "just a string\n");
  server.state.putSecret("cert", new Uint8Array([0, 1, 2, 250, 255]));
  server.state.putSecret("list", "[1,2,3]");
});
afterAll(async () => {
  await server.stop();
  await rm(home, { recursive: true, force: true });
});
afterEach(() => {
  server.state.authFailure = undefined;
  server.state.throttleNext(0);
});

describe("aws provider: configuration", () => {
  const create = (params: Partial<Parameters<typeof awsProvider.create>[0]>, env: Record<string, string | undefined> = {}) =>
    awsProvider.create({ name: "prod", type: "aws", region: "us-east-1", config: {}, ...params }, { log: noLog, env });

  test("an unknown config key is refused with its full path", async () => {
    await expect(create({ config: { vault_url: "x" } })).rejects.toMatchObject({
      code: "CONFIG_INVALID",
      message: expect.stringContaining("providers.prod.config.vault_url"),
    });
  });

  test("auth.method must be iam_role, env or access_key", async () => {
    await expect(create({ auth: { method: "token" } })).rejects.toThrow("providers.prod.auth.method");
    for (const method of ["iam_role", "env"]) {
      const client = await create({ auth: { method } });
      await client.close();
    }
  });

  test("access_key needs both halves of a key, from auth.params or the agent's AWS_* variables", async () => {
    await expect(create({ auth: { method: "access_key" } })).rejects.toThrow("auth.method access_key needs an access key");
    await expect(create({ auth: { method: "access_key", params: { access_key_id: "AKIDX" } } })).rejects.toThrow(
      "providers.prod.auth.params.secret_access_key",
    );
    const fromParams = await create({ auth: { method: "access_key", params: { access_key_id: "AKIDX", secret_access_key: "s" } } });
    await fromParams.close();
    const fromAgent = await create({ auth: { method: "access_key" }, credentials: { AWS_ACCESS_KEY_ID: "AKIDX", AWS_SECRET_ACCESS_KEY: "s" } });
    await fromAgent.close();
  });

  test("assuming a role is refused with a pointer to what works instead", async () => {
    await expect(create({ auth: { method: "iam_role", params: { role_arn: "arn:aws:iam::1:role/x" } } })).rejects.toThrow(
      /providers\.prod\.auth\.params\.role_arn: assuming a role is not supported.*AWS_PROFILE/,
    );
  });

  test("the region comes from the provider, else AWS_REGION or AWS_DEFAULT_REGION, else is required", async () => {
    await expect(create({ region: undefined })).rejects.toThrow("providers.prod.region: required");
    await (await create({ region: undefined }, { AWS_DEFAULT_REGION: "eu-west-1" })).close();
    await expect(create({ region: "not a region" })).rejects.toThrow("is not an AWS region name");
  });

  test("the endpoint must be an http(s) URL without credentials in it", async () => {
    await expect(create({ config: { endpoint: "ftp://x" } })).rejects.toThrow("providers.prod.config.endpoint");
    await expect(create({ config: { endpoint: "https://u:p@x" } })).rejects.toThrow("must not carry credentials");
    await expect(create({ config: { max_attempts: "0" } })).rejects.toThrow("providers.prod.config.max_attempts");
  });

  test("a bad config fails configure of the real child with the field named", async () => {
    const p = awsProcess({ config: { bogus: "1" } });
    try {
      await expect(p.health()).rejects.toThrow("providers.prod.config.bogus");
    } finally {
      await p.stop();
    }
  });
});

describe("aws provider: values", () => {
  test("a JSON object gives its keys (non-strings JSON-encoded, no tag keys); other text is `value`; binary is base64", () => {
    expect(decodeSecretValue({ SecretString: '{"a":"x","n":1,"o":{"b":true}}' })).toEqual({
      data: { a: "x", n: "1", o: '{"b":true}' },
      encoding: "utf8",
    });
    expect(decodeSecretValue({ SecretString: "[1,2]" })).toEqual({ data: { value: "[1,2]" }, encoding: "utf8" });
    expect(decodeSecretValue({ SecretString: "{not json" })).toEqual({ data: { value: "{not json" }, encoding: "utf8" });
    expect(decodeSecretValue({ SecretString: "{}" })).toEqual({ data: { value: "{}" }, encoding: "utf8" });
    expect(decodeSecretValue({ SecretBinary: new Uint8Array([255, 0]) })).toEqual({ data: { value: "/wA=" }, encoding: "base64" });
  });

  test("a pinned version must still be labelled and hold the pinned stage", () => {
    const map = { v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "blue"] };
    expect(selectVersion({ name: "s" }, map)).toBe("v2");
    expect(selectVersion({ name: "s", stage: "AWSPREVIOUS" }, map)).toBe("v1");
    expect(selectVersion({ name: "s", version: "v1" }, map)).toBe("v1");
    expect(selectVersion({ name: "s", version: "v1", stage: "blue" }, map)).toBeUndefined();
    expect(selectVersion({ name: "s", version: "gone" }, map)).toBeUndefined();
    expect(selectVersion({ name: "s", stage: "green" }, map)).toBeUndefined();
  });
});

describe("aws provider: the real `dso provider aws` child against the local Secrets Manager", () => {
  let p: ProviderProcess;
  beforeAll(() => {
    p = awsProcess();
  });
  afterAll(() => p.stop());

  test("fetch batches current values and shapes them; a missing secret fails only itself", async () => {
    resetCalls();
    const items = legacyItems(await p.fetch([{ name: "db" }, { name: "plain" }, { name: "cert" }, { name: "list" }, { name: "nope" }, { name: "db" }]));
    expect(items.map((i) => i.ref.name)).toEqual(["db", "plain", "cert", "list", "nope", "db"]);
    expect(items[0]?.value).toEqual({ data: { username: "app", password: PLANTED_VALUE, port: "5432", opts: '{"tls":true}' }, encoding: "utf8" });
    expect(items[1]?.value).toEqual({ data: { value: "just a string\n" }, encoding: "utf8" });
    expect(items[2]?.value).toEqual({ data: { value: Buffer.from([0, 1, 2, 250, 255]).toString("base64") }, encoding: "base64" });
    expect(items[3]?.value?.data).toEqual({ value: "[1,2,3]" });
    expect(items[4]?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: 'provider prod (aws): secret "nope" not found (ResourceNotFoundException)' });
    expect(items[5]?.value).toEqual(items[0]!.value!);
    expect(server.state.calls).toEqual({ BatchGetSecretValue: 1 });
  });

  test("fetch of 45 current secrets costs 3 BatchGetSecretValue calls and no GetSecretValue", async () => {
    for (let i = 0; i < 45; i++) server.state.putSecret(`batch/${i}`, `v${i}`);
    resetCalls();
    const items = legacyItems(await p.fetch(Array.from({ length: 45 }, (_, i) => ({ name: `batch/${i}` }))));
    expect(items.map((i) => i.value?.data.value)).toEqual(Array.from({ length: 45 }, (_, i) => `v${i}`));
    expect(server.state.calls).toEqual({ BatchGetSecretValue: 3 });
  });

  test("fingerprint is the VersionId and detects a rotation without a single value read", async () => {
    const before = await p.fingerprint([{ name: "db" }, { name: "plain" }]);
    const [fetched] = legacyItems(await p.fetch([{ name: "db" }]));
    expect(before[0]?.fingerprint).toBe(fetched!.fingerprint!);
    resetCalls();
    const rotated = server.state.putSecret("db", JSON.stringify({ username: "app", password: "rotated-pw-1234" }));
    const after = await p.fingerprint([{ name: "db" }, { name: "plain" }]);
    expect(after[0]?.fingerprint).toBe(rotated);
    expect(after[0]?.fingerprint).not.toBe(before[0]!.fingerprint!);
    expect(after[1]?.fingerprint).toBe(before[1]!.fingerprint!);
    expect(valueCalls()).toBe(0);
    expect(JSON.stringify(after)).not.toContain("rotated-pw");
  });

  test("a metadata-only change (tags, description) does not change the fingerprint", async () => {
    const [before] = await p.fingerprint([{ name: "plain" }]);
    const s = server.state.secrets.get("plain")!;
    s.tags = { owner: "someone" };
    s.description = "edited";
    s.lastChanged = new Date(Date.now() + 1000);
    const [after] = await p.fingerprint([{ name: "plain" }]);
    expect(after?.fingerprint).toBe(before!.fingerprint!);
  });

  test("version pinning by VersionId and by stage, in fetch and fingerprint", async () => {
    const v1 = server.state.putSecret("pinned", "one");
    const v2 = server.state.putSecret("pinned", "two");
    const refs = [{ name: "pinned", version: v1 }, { name: "pinned", stage: "AWSPREVIOUS" }, { name: "pinned" }, { name: "pinned", stage: "green" }];
    const fps = await p.fingerprint(refs);
    expect(fps.map((f) => f.fingerprint)).toEqual([v1, v1, v2, undefined]);
    expect(fps[3]?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: expect.stringContaining("has no stage green") });
    resetCalls();
    const items = legacyItems(await p.fetch(refs));
    expect(items.map((i) => i.value?.data.value)).toEqual(["one", "one", "two", undefined]);
    expect(items.map((i) => i.version)).toEqual([v1, v1, v2, undefined]);
    expect(items[3]?.error?.code).toBe("SECRET_NOT_FOUND");
    // The batch reads AWSCURRENT only: each pinned ref costs one GetSecretValue.
    expect(server.state.calls.BatchGetSecretValue).toBe(1);
    expect(server.state.calls.GetSecretValue).toBe(3);
  });

  test("a secret scheduled for deletion is not found, for polling and for fetching", async () => {
    server.state.putSecret("leaving", "bye");
    server.state.deleteSecret("leaving", { scheduled: true });
    const [fp] = await p.fingerprint([{ name: "leaving" }]);
    expect(fp?.error).toMatchObject({ code: "SECRET_NOT_FOUND", message: expect.stringContaining("scheduled for deletion") });
    const [item] = legacyItems(await p.fetch([{ name: "leaving" }]));
    expect(item?.error?.code).toBe("SECRET_NOT_FOUND");
  });

  test("an ARN ref is matched by DescribeSecret when a name filter cannot find it", async () => {
    const arn = server.state.secrets.get("plain")!.arn;
    resetCalls();
    const items = await p.fingerprint([{ name: arn }, { name: "db" }, { name: arn.slice(0, -7) }]);
    expect(items[0]?.fingerprint).toBeDefined();
    expect(items[2]?.fingerprint).toBe(items[0]!.fingerprint!);
    expect(server.state.calls.ListSecrets).toBe(1);
    expect(server.state.calls.DescribeSecret).toBe(2);
    const [fetched] = legacyItems(await p.fetch([{ name: arn }]));
    expect(fetched?.value?.data.value).toBe("just a string\n");
  });

  test("region and endpoint can come from the agent's AWS_REGION and AWS_ENDPOINT_URL_SECRETS_MANAGER", async () => {
    const fromEnv = new ProviderProcess({
      configure: { name: "prod", type: "aws", config: {} },
      env: agentEnv({ AWS_REGION: "us-east-1", AWS_ENDPOINT_URL_SECRETS_MANAGER: server.url }),
    });
    try {
      const [item] = await fromEnv.fingerprint([{ name: "plain" }]);
      expect(item?.fingerprint).toBe(server.state.secrets.get("plain")!.versions.at(-1)!.versionId);
    } finally {
      await fromEnv.stop();
    }
  });

  test("health is one cheap ListSecrets call", async () => {
    resetCalls();
    expect(await p.health()).toEqual({ ok: true });
    expect(server.state.calls).toEqual({ ListSecrets: 1 });
  });
});

describe("aws provider: polling cost", () => {
  let big: AwsServer;
  beforeAll(async () => {
    big = await startAwsServer();
    for (let i = 0; i < 1000; i++) big.state.putSecret(`app/secret-${String(i).padStart(4, "0")}`, `value-${i}`);
  });
  afterAll(() => big.stop());

  test("polling 1,000 secrets costs 10 ListSecrets calls and nothing else, twice in a row", async () => {
    const p = awsProcess({ endpoint: big.url });
    const refs = [...big.state.secrets.keys()].map((name) => ({ name }));
    try {
      for (let round = 0; round < 2; round++) {
        for (const key of Object.keys(big.state.calls)) delete big.state.calls[key];
        const items = await p.fingerprint(refs);
        expect(items.every((i) => i.fingerprint !== undefined)).toBe(true);
        expect(big.state.calls).toEqual({ ListSecrets: 10 });
      }
      // A rotation among the 1,000 shows up in exactly one fingerprint.
      const before = await p.fingerprint(refs);
      big.state.putSecret("app/secret-0500", "rotated");
      const after = await p.fingerprint(refs);
      const changed = after.filter((item, i) => item.fingerprint !== before[i]!.fingerprint);
      expect(changed.map((c) => c.ref.name)).toEqual(["app/secret-0500"]);
    } finally {
      await p.stop();
    }
  });

  test("a few refs in a large account use name filters: 25 refs cost 3 ListSecrets calls", async () => {
    const p = awsProcess({ endpoint: big.url });
    const refs = Array.from({ length: 25 }, (_, i) => ({ name: `app/secret-${String(i * 7).padStart(4, "0")}` }));
    try {
      for (const key of Object.keys(big.state.calls)) delete big.state.calls[key];
      const items = await p.fingerprint(refs);
      expect(items.every((i) => i.fingerprint !== undefined)).toBe(true);
      expect(big.state.calls).toEqual({ ListSecrets: 3 });
    } finally {
      await p.stop();
    }
  });

  test("the name filter's prefix match never returns a different secret for a ref", async () => {
    big.state.putSecret("app/secret-00", "short name, prefix of many");
    const p = awsProcess({ endpoint: big.url });
    try {
      const [item] = await p.fingerprint([{ name: "app/secret-00" }]);
      const current = big.state.secrets.get("app/secret-00")!.versions.at(-1)!.versionId;
      expect(item?.fingerprint).toBe(current);
    } finally {
      await p.stop();
    }
  });
});

describe("aws provider: throttling", () => {
  test("a short throttle is ridden out by the SDK's backoff and the server saw the retries", async () => {
    const p = awsProcess();
    try {
      await p.health();
      resetCalls();
      server.state.throttleNext(2);
      const [item] = await p.fingerprint([{ name: "db" }]);
      expect(item?.fingerprint).toBeDefined();
      expect(server.state.calls.ListSecrets).toBe(3);
    } finally {
      await p.stop();
    }
  }, 15_000);

  test("a sustained throttle gives PROVIDER_THROTTLED with retryAfterMs after the bounded attempts", async () => {
    const p = awsProcess({ config: { max_attempts: "2" } });
    try {
      await p.health();
      resetCalls();
      server.state.throttleNext(1000);
      const started = Date.now();
      const error = await p.fingerprint([{ name: "db" }]).catch((e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_THROTTLED", message: expect.stringContaining("provider prod (aws): throttled") });
      expect(error.retryAfterMs).toBeGreaterThan(0);
      expect(server.state.calls.ListSecrets).toBe(2);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await p.stop();
    }
  }, 15_000);

  test("Retry-After from AWS is honoured between attempts and reported when exhausted", async () => {
    const proxy = startFaultProxy(server.url);
    const p = awsProcess({ endpoint: proxy.url, config: { max_attempts: "2" } });
    try {
      await p.health();
      proxy.faults.retryAfterSeconds = 1;
      proxy.faults.throttle = 1;
      const started = Date.now();
      const [item] = await p.fingerprint([{ name: "db" }]);
      expect(item?.fingerprint).toBeDefined();
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);

      proxy.faults.retryAfterSeconds = 3;
      proxy.faults.throttle = 1000;
      const error = await p.fingerprint([{ name: "db" }]).catch((e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_THROTTLED", retryAfterMs: 3000 });
    } finally {
      proxy.faults.throttle = 0;
      await p.stop();
      proxy.stop();
    }
  }, 20_000);
});

describe("aws provider: credentials and permissions", () => {
  test("a rejected access key is PROVIDER_AUTH naming the provider, without the key or any value", async () => {
    const p = awsProcess({ env: agentEnv({ AWS_ACCESS_KEY_ID: "AKIAWRONGKEY00000000" }) });
    try {
      const error = await p.fingerprint([{ name: "db" }]).catch((e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH", message: "provider prod (aws): credentials rejected (UnrecognizedClientException)" });
      const fetchError = await p.fetch([{ name: "db" }]).catch((e) => e);
      expect(fetchError.code).toBe("PROVIDER_AUTH");
      for (const message of [error.message, fetchError.message]) {
        expect(message).not.toContain(PLANTED_KEY);
        expect(message).not.toContain("AKIAWRONGKEY");
        expect(message).not.toContain(PLANTED_VALUE);
      }
      expect(await p.health()).toEqual({ ok: false, message: "provider prod (aws): credentials rejected (UnrecognizedClientException)" });
    } finally {
      await p.stop();
    }
  });

  test("an expired session token is PROVIDER_AUTH", async () => {
    const p = awsProcess({ env: agentEnv({ AWS_SESSION_TOKEN: "planted-session-token-abcdef" }) });
    try {
      server.state.authFailure = "ExpiredTokenException";
      const error = await p.fetch([{ name: "db" }]).catch((e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH", message: "provider prod (aws): credentials rejected (ExpiredTokenException)" });
      expect(error.message).not.toContain("planted-session-token");
    } finally {
      await p.stop();
    }
  });

  test("with no credentials anywhere the default chain fails as PROVIDER_AUTH", async () => {
    const env = agentEnv();
    delete env.AWS_ACCESS_KEY_ID;
    delete env.AWS_SECRET_ACCESS_KEY;
    const p = awsProcess({ env, auth: { method: "iam_role" } });
    try {
      const error = await p.fingerprint([{ name: "db" }]).catch((e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH", message: "provider prod (aws): credentials rejected (CredentialsProviderError)" });
    } finally {
      await p.stop();
    }
  });

  test("without ListSecrets permission polling falls back to DescribeSecret; without BatchGetSecretValue, to GetSecretValue", async () => {
    const proxy = startFaultProxy(server.url);
    proxy.faults.deny = new Set(["ListSecrets", "BatchGetSecretValue"]);
    const p = awsProcess({ endpoint: proxy.url });
    try {
      expect(await p.health()).toMatchObject({ ok: true, message: expect.stringContaining("ListSecrets not allowed") });
      const fps = await p.fingerprint([{ name: "db" }, { name: "plain" }, { name: "nope" }]);
      expect(fps.map((f) => f.error?.code ?? "ok")).toEqual(["ok", "ok", "SECRET_NOT_FOUND"]);
      const items = legacyItems(await p.fetch([{ name: "db" }, { name: "plain" }]));
      expect(items[1]?.value?.data.value).toBe("just a string\n");
      expect(items[0]?.fingerprint).toBe(fps[0]!.fingerprint!);
      // Denied once, not asked again by the long-lived process: the next poll goes straight to
      // DescribeSecret. Each fetch runs in a fresh process (values die with it), which learns the
      // denial anew: one refused BatchGetSecretValue per fetch, fetches being rare (on change).
      proxy.faults.seen = {};
      await p.fingerprint([{ name: "db" }]);
      expect(proxy.faults.seen).toEqual({ DescribeSecret: 1 });
      legacyItems(await p.fetch([{ name: "db" }]));
      expect(proxy.faults.seen).toEqual({ DescribeSecret: 1, BatchGetSecretValue: 1, GetSecretValue: 1 });
    } finally {
      await p.stop();
      proxy.stop();
    }
  });

  test("access denied on one secret is reported on that secret only", async () => {
    const proxy = startFaultProxy(server.url);
    proxy.faults.deny = new Set(["BatchGetSecretValue", "GetSecretValue"]);
    const p = awsProcess({ endpoint: proxy.url });
    try {
      const [item] = legacyItems(await p.fetch([{ name: "db" }]));
      expect(item?.error).toMatchObject({ code: "PROVIDER_AUTH", message: 'provider prod (aws): secret "db" access denied (AccessDeniedException)' });
    } finally {
      await p.stop();
      proxy.stop();
    }
  });
});

describe("aws provider: no secret in the child's logs", () => {
  test("a fetch, a failed poll and a fallback leave no value or key on stderr", async () => {
    server.state.putSecret("logscan", JSON.stringify({ password: PLANTED_VALUE, port: 6543 }));
    const proxy = startFaultProxy(server.url);
    proxy.faults.deny = new Set(["BatchGetSecretValue"]);
    const child = Bun.spawn([process.execPath, join(REPO, "src/main.ts"), "provider", "aws"], {
      cwd: REPO,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "", HOME: home, DSO_LOG_FORMAT: "json", DSO_LOG_LEVEL: "debug", AWS_EC2_METADATA_DISABLED: "true" },
    });
    const send = (id: number, method: string, params?: unknown) => {
      child.stdin.write(encodeFrame({ id, method, ...(params ? { params } : {}) }));
      child.stdin.flush();
    };
    const frames = readFrames(child.stdout, FRAME_LIMITS);
    const next = async () => (await frames.next()).value?.value as Record<string, any>;
    try {
      expect((await next()).type).toBe("hello");
      send(1, "configure", {
        name: "prod",
        type: "aws",
        region: "us-east-1",
        config: { endpoint: proxy.url },
        credentials: { AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: PLANTED_KEY },
      });
      expect((await next()).result).toEqual({ ok: true });
      send(2, "fingerprint", { refs: [{ name: "logscan" }, { name: "nope" }] });
      expect((await next()).result.items[0].fingerprint).toBeDefined();
      send(3, "fetch", { refs: [{ name: "logscan" }, { name: "nope" }] });
      const frame = (await frames.next()).value as { ok: true; value: any; raw?: Uint8Array };
      // The value is in the frame's raw section, never in its JSON.
      expect(JSON.stringify(frame.value)).not.toContain(PLANTED_VALUE);
      const [first] = valuesFromWire(frame.value.result.items, frame.raw, "prod");
      expect(new TextDecoder().decode(first!.value!.get("password"))).toBe(PLANTED_VALUE);
      server.state.authFailure = "UnrecognizedClientException";
      send(4, "fetch", { refs: [{ name: "logscan" }] });
      expect((await next()).error.code).toBe("PROVIDER_AUTH");
      send(5, "shutdown");
      expect((await next()).id).toBe(5);
      await child.exited;
      const stderr = await new Response(child.stderr).text();
      // The scan is only meaningful if the child did log: the poll summary and the fallback warning.
      expect(stderr).toContain("fingerprint poll");
      expect(stderr).toContain("BatchGetSecretValue is not allowed");
      expect(stderr).not.toContain(PLANTED_VALUE);
      expect(stderr).not.toContain(PLANTED_KEY);
      expect(stderr).not.toContain("6543");
    } finally {
      child.kill();
      proxy.stop();
    }
  });
});
