import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DEFAULT_VAULT_ADDRESS, parseVaultSettings } from "../../providers/vault/config.ts";
import { MAX_PARALLEL_REQUESTS } from "../../providers/vault/index.ts";
import { canonicalJson, parseSecretPath } from "../../providers/vault/kv.ts";
import { THROTTLE_MAX_RETRIES } from "../../providers/vault/transport.ts";
import type { ConfigureParams } from "../../providers/types.ts";
import { encodeFrame, readFrames } from "../../src/rpc/framing.ts";
import { FRAME_LIMITS } from "../../src/rpc/protocol.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { createTestCertificate, type TestCertificate } from "../support/tls-cert.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";
import { dsoBinary } from "../support/dso-binary.ts";
import { scanProcessMemory, type Sighting } from "../support/memory-scan.ts";

const PLANTED_PASSWORD = "planted-Vault-Password-90210";
/** Bytes kept before each copy a memory scan finds: enough to reach an HTTP response's status line. */
const HTTP_CONTEXT_BYTES = 400;
const MAIN = new URL("../../src/main.ts", import.meta.url).pathname;

let vault: VaultServer;
let cert: TestCertificate;

/** Calls the emulator counted since `before`, per endpoint kind. */
function delta(before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(vault.state.calls)) {
    // `requests` and `throttled` are totals over the kinds; the kinds are what these tests assert.
    if (k !== "requests" && k !== "throttled" && v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  }
  return out;
}
const snapshot = () => ({ ...vault.state.calls });

function provider(options: {
  config?: Record<string, string>;
  env?: Record<string, string>;
  auth?: ConfigureParams["auth"];
  name?: string;
}) {
  return new ProviderProcess({
    configure: { name: options.name ?? "hv", type: "vault", config: options.config ?? {}, ...(options.auth ? { auth: options.auth } : {}) },
    env: { PATH: process.env.PATH, VAULT_ADDR: vault.url, VAULT_TOKEN: vault.state.rootToken, ...options.env },
  });
}

async function using<T>(p: ProviderProcess, body: (p: ProviderProcess) => Promise<T>): Promise<T> {
  try {
    return await body(p);
  } finally {
    await p.stop();
  }
}

/**
 * A front for the emulator, in this file because the emulator lacks these: it records every
 * request with its status (the emulator does not count throttled requests), adds Retry-After to
 * 429 answers (the emulator sends none), and can serve HTTPS.
 */
function startFront(options: { retryAfter?: string; tls?: TestCertificate } = {}) {
  const seen: Array<{ path: string; status: number }> = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    ...(options.tls ? { tls: { cert: options.tls.certPem, key: options.tls.keyPem } } : {}),
    async fetch(req) {
      const url = new URL(req.url);
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      const upstream = await fetch(`${vault.url}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body });
      seen.push({ path: url.pathname, status: upstream.status });
      const headers = new Headers(upstream.headers);
      if (upstream.status === 429 && options.retryAfter) headers.set("retry-after", options.retryAfter);
      return new Response(await upstream.arrayBuffer(), { status: upstream.status, headers });
    },
  });
  const scheme = options.tls ? "https" : "http";
  return { url: `${scheme}://127.0.0.1:${server.port}`, seen, stop: () => server.stop(true) };
}

/** Runs `dso provider vault` by hand with raw frames, returning the replies and everything on stderr. */
async function rawProviderRun(configure: ConfigureParams, calls: Array<{ method: string; params?: unknown }>) {
  const child = Bun.spawn([process.execPath, MAIN, "provider", "vault"], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "", DSO_LOG_FORMAT: "json", DSO_LOG_LEVEL: "debug" },
  });
  const frames = readFrames(child.stdout, FRAME_LIMITS);
  const stderr = new Response(child.stderr).text();
  const replies: unknown[] = [];
  const raws: string[] = [];
  await frames.next(); // hello
  const all = [{ method: "configure", params: configure }, ...calls, { method: "shutdown" }];
  for (const [i, call] of all.entries()) {
    child.stdin.write(encodeFrame({ id: i + 1, ...call }));
    child.stdin.flush();
    const next = await frames.next();
    replies.push(next.value?.ok ? next.value.value : undefined);
    raws.push(next.value?.ok && next.value.raw ? new TextDecoder().decode(next.value.raw) : "");
  }
  child.stdin.end();
  await child.exited;
  return { replies: replies as Array<{ result?: any; error?: any }>, raws, stderr: await stderr };
}

beforeAll(async () => {
  vault = await startVaultServer();
  cert = createTestCertificate();
  vault.state.writeSecret("secret/app/db", { username: "app", password: PLANTED_PASSWORD, port: 5432, opts: { tls: true } });
  vault.state.policies.set("metadata-only", [{ path: "secret/metadata/*", capabilities: ["read"] }]);
});
afterAll(async () => {
  await vault.stop();
  cert.remove();
});

describe("vault provider: values and fingerprints (KV v2)", () => {
  test("fetch returns the KV v2 map with non-string values JSON-encoded, and a fingerprint equal to polling's", async () => {
    await using(provider({}), async (p) => {
      const [item] = legacyItems(await p.fetch([{ name: "app/db" }]));
      expect(item?.value).toEqual({
        data: { username: "app", password: PLANTED_PASSWORD, port: "5432", opts: '{"tls":true}' },
        encoding: "utf8",
      });
      expect(item?.version).toBe("1");
      const [fp] = await p.fingerprint([{ name: "app/db" }]);
      expect(fp?.fingerprint).toMatch(/^v1@\d{4}-\d\d-\d\dT/);
      expect(item?.fingerprint).toBe(fp!.fingerprint!);
    });
  });

  test("a metadata-only token detects a change with zero data reads on the server", async () => {
    vault.state.writeSecret("secret/rotating", { key: "first-value" });
    const token = vault.state.createToken({ policies: ["metadata-only"] });
    await using(provider({ env: { VAULT_TOKEN: token } }), async (p) => {
      const before = snapshot();
      const [first] = await p.fingerprint([{ name: "rotating" }]);
      vault.state.writeSecret("secret/rotating", { key: "second-value" });
      const [second] = await p.fingerprint([{ name: "rotating" }]);
      expect(first?.fingerprint).toStartWith("v1@");
      expect(second?.fingerprint).toStartWith("v2@");
      expect(delta(before)).toEqual({ lookupSelf: 1, metadata: 2 });
      expect(JSON.stringify([first, second])).not.toContain("value");
      // The same token really cannot read data: the emulator refuses it.
      const [refused] = legacyItems(await p.fetch([{ name: "rotating" }]));
      expect(refused?.error?.code).toBe("PROVIDER_AUTH");
    });
  });

  test("a secret deleted and re-created at the same version number still changes its fingerprint", async () => {
    vault.state.writeSecret("secret/recreated", { k: "a" });
    await using(provider({}), async (p) => {
      const [before] = await p.fingerprint([{ name: "recreated" }]);
      vault.state.deleteSecret("secret/recreated");
      await Bun.sleep(5);
      vault.state.writeSecret("secret/recreated", { k: "b" });
      const [after] = await p.fingerprint([{ name: "recreated" }]);
      expect(before?.fingerprint).toStartWith("v1@");
      expect(after?.fingerprint).toStartWith("v1@");
      expect(after?.fingerprint).not.toBe(before!.fingerprint!);
    });
  });

  test("polling 1,000 secrets costs 1,000 metadata reads and no data read", async () => {
    for (let i = 0; i < 1000; i++) vault.state.writeSecret(`secret/bulk/s${i}`, { v: `value-${i}` });
    const refs = Array.from({ length: 1000 }, (_, i) => ({ name: `bulk/s${i}` }));
    await using(provider({}), async (p) => {
      await p.health();
      const before = snapshot();
      const items = await p.fingerprint(refs);
      expect(items.map((i) => i.ref.name)).toEqual(refs.map((r) => r.name));
      expect(items.every((i) => i.fingerprint?.startsWith("v1@"))).toBe(true);
      expect(delta(before)).toEqual({ metadata: 1000 });
    });
  });

  test("a missing secret is an in-band SECRET_NOT_FOUND and does not fail the others", async () => {
    await using(provider({}), async (p) => {
      const fps = await p.fingerprint([{ name: "nope/missing" }, { name: "app/db" }]);
      expect(fps[0]?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(fps[0]?.error?.message).toContain("nope/missing");
      expect(fps[1]?.fingerprint).toStartWith("v1@");
      const items = legacyItems(await p.fetch([{ name: "app/db" }, { name: "nope/missing" }]));
      expect(items[0]?.value?.data.username).toBe("app");
      expect(items[1]?.error?.code).toBe("SECRET_NOT_FOUND");
    });
  });

  test("a secret whose current version is soft-deleted is not found, for polling and fetch", async () => {
    vault.state.writeSecret("secret/soft", { k: "v1" });
    await using(provider({}), async (p) => {
      await vault.state.writeSecret("secret/soft", { k: "v2" });
      await fetch(`${vault.url}/v1/secret/data/soft`, { method: "DELETE", headers: { "x-vault-token": vault.state.rootToken } });
      const [fp] = await p.fingerprint([{ name: "soft" }]);
      expect(fp?.error?.code).toBe("SECRET_NOT_FOUND");
      const [item] = legacyItems(await p.fetch([{ name: "soft" }]));
      expect(item?.error?.code).toBe("SECRET_NOT_FOUND");
      const [older] = legacyItems(await p.fetch([{ name: "soft", version: "1" }]));
      expect(older?.value?.data).toEqual({ k: "v1" });
    });
  });
});

describe("vault provider: version pinning", () => {
  test("ref.version and the Go DSO's ?version=N pin a version; ref.version wins", async () => {
    vault.state.writeSecret("secret/pinned", { k: "one" });
    vault.state.writeSecret("secret/pinned", { k: "two" });
    vault.state.writeSecret("secret/pinned", { k: "three" });
    await using(provider({}), async (p) => {
      const items = legacyItems(await p.fetch([
        { name: "pinned", version: "1" },
        { name: "pinned?version=2" },
        { name: "pinned?version=2", version: "1" },
        { name: "pinned" },
      ]));
      expect(items.map((i) => i.value?.data.k)).toEqual(["one", "two", "one", "three"]);
      expect(items.map((i) => i.version)).toEqual(["1", "2", "1", "3"]);
      expect(items[0]?.fingerprint).toBe("v1");
      // Fetches ran in a short-lived process of their own: the long-lived one logs in on its first call.
      await p.fingerprint([{ name: "pinned" }]);
      const before = snapshot();
      const fps = await p.fingerprint([{ name: "pinned", version: "2" }, { name: "pinned", version: "9" }, { name: "pinned", version: "x" }]);
      expect(fps[0]?.fingerprint).toBe("v2");
      expect(fps[1]?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(fps[2]?.error?.code).toBe("CONFIG_INVALID");
      expect(delta(before)).toEqual({ metadata: 2 });
    });
  });

  test("secret names: plain paths under the mount only; stages and unknown parameters are refused", () => {
    expect(parseSecretPath({ name: "a/b c/d" }, 2)).toEqual({ path: "a/b%20c/d" });
    expect(parseSecretPath({ name: "/a/b/" }, 2)).toEqual({ path: "a/b" });
    expect(() => parseSecretPath({ name: "a/../../sys/raw" }, 2)).toThrow("not a plain path");
    expect(() => parseSecretPath({ name: "a//b" }, 2)).toThrow("not a plain path");
    expect(() => parseSecretPath({ name: "a?list=true" }, 2)).toThrow('unknown parameter "list"');
    expect(() => parseSecretPath({ name: "a", stage: "AWSCURRENT" }, 2)).toThrow("not stages");
    expect(() => parseSecretPath({ name: "a", version: "1" }, 1)).toThrow("KV v1 mount has no versions");
  });
});

describe("vault provider: KV v1", () => {
  test("fingerprints are keyed MACs made in the provider; they change with the value and carry none of it", async () => {
    vault.state.writeSecret("kv/legacy", { user: "u", password: PLANTED_PASSWORD });
    await using(provider({ config: { mount: "kv", kv_version: "1" } }), async (p) => {
      const [first] = await p.fingerprint([{ name: "legacy" }]);
      expect(first?.fingerprint).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
      expect(JSON.stringify(first)).not.toContain(PLANTED_PASSWORD);
      // The unkeyed hash of the value (what a guesser would compute) is nowhere in it.
      const bare = new Bun.CryptoHasher("sha256").update(canonicalJson({ password: PLANTED_PASSWORD, user: "u" })).digest("hex");
      expect(JSON.stringify(first)).not.toContain(bare.slice(0, 12));
      // Key order does not matter: the hash is over canonical JSON.
      vault.state.writeSecret("kv/legacy", { password: PLANTED_PASSWORD, user: "u" });
      expect((await p.fingerprint([{ name: "legacy" }]))[0]?.fingerprint).toBe(first!.fingerprint!);
      vault.state.writeSecret("kv/legacy", { user: "u", password: "changed" });
      const [changed] = await p.fingerprint([{ name: "legacy" }]);
      expect(changed?.fingerprint).not.toBe(first!.fingerprint!);
      const [item] = legacyItems(await p.fetch([{ name: "legacy" }]));
      expect(item?.value?.data).toEqual({ user: "u", password: "changed" });
      expect(item?.fingerprint).toBe(changed!.fingerprint!);
      expect((legacyItems(await p.fetch([{ name: "legacy", version: "2" }])))[0]?.error?.code).toBe("CONFIG_INVALID");
    });
  });

  test("a KV v1 mount without a fingerprint key (an old agent) is refused at configure; KV v2 needs none", async () => {
    const { replies } = await rawProviderRun({ name: "hv", type: "vault", config: { address: vault.url, mount: "kv", kv_version: "1" }, credentials: { VAULT_TOKEN: vault.state.rootToken } }, []);
    expect(JSON.stringify(replies)).toContain("the agent sent no fingerprintKey");
    const v2 = await rawProviderRun({ name: "hv", type: "vault", config: { address: vault.url }, credentials: { VAULT_TOKEN: vault.state.rootToken } }, []);
    expect(JSON.stringify(v2.replies)).toContain('"ok":true');
  });

  test("the long-lived provider keeps no KV v1 value it polled, but for the runtime's socket buffer holding the last response (memory scan, compiled binary)", async () => {
    // Issue 18: KV v1 has no metadata, so a poll reads the value. The long-lived process (the one
    // that answers `fingerprint`) must hold no copy of it afterwards; its values live only in the
    // short-lived fetch process. Positive control: the scan finds the secret's path, which that
    // same process did hold (names are not values).
    const run = crypto.randomUUID().slice(0, 8);
    const path = `memscan-${run}/db`;
    const values = [`kv1mem-v1-${crypto.randomUUID()}`, `kv1mem-v2-${crypto.randomUUID()}`];
    const key = "b2".repeat(32);
    const secretOf = (value: string) => ({ user: "u<&>", password: value, port: 5432 });
    const p = new ProviderProcess({
      configure: { name: "hv", type: "vault", config: { mount: "kv", kv_version: "1" }, fingerprintKey: key },
      env: { PATH: process.env.PATH, VAULT_ADDR: vault.url, VAULT_TOKEN: vault.state.rootToken },
      command: [await dsoBinary(), "provider", "vault"],
    });
    await using(p, async () => {
      const fingerprints: string[] = [];
      for (const value of values) {
        // Characters Vault's Go encoder escapes (<, >, &) and a number: all read as bytes.
        vault.state.writeSecret(`kv/${path}`, secretOf(value));
        for (let poll = 0; poll < 3; poll++) fingerprints.push((await p.fingerprint([{ name: path }]))[0]!.fingerprint!);
      }
      expect(new Set(fingerprints).size).toBe(2);
      // Made from the bytes, the fingerprint is still the keyed MAC of the value's canonical JSON
      // (as when it was made from the parsed value): an upgrade rotates nothing.
      const macOf = (value: string) => `hmac-sha256:${new Bun.CryptoHasher("sha256", Buffer.from(key, "hex")).update(canonicalJson(secretOf(value))).digest("hex")}`;
      expect(fingerprints.at(-1)).toBe(macOf(values[1]!));
      // A fetch (its own short-lived process) agrees with the polls.
      const [item] = await p.fetch([{ name: path }]);
      expect(item?.fingerprint).toBe(fingerprints.at(-1)!);
      for (const bytes of item?.value?.values() ?? []) bytes.fill(0);
      await Bun.sleep(500);
      const pid = p.getStatus().pid!;
      const scan = scanProcessMemory(
        pid,
        [
          { label: "v1", value: values[0]! },
          { label: "v2", value: values[1]! },
          { label: "name", value: `memscan-${run}` },
        ],
        { contextBytes: HTTP_CONTEXT_BYTES },
      );
      const count = (label: string) => scan.counts.get(label)!.latin1 + scan.counts.get(label)!.utf16;
      const copies = scan.sightings.filter((s) => s.label !== "name");
      // What is left may only be the runtime's socket receive buffer: the raw HTTP response of the
      // last read, status line and headers right before the body. Not a string; the next response
      // read overwrites it (which is why no rotated-out value is ever found).
      const inSocketBuffer = (s: Sighting) => s.before.toString("latin1").includes("HTTP/1.1 200 OK");
      const shown = (b: Buffer) => [...b].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "·")).join("");
      console.log(
        `KV v1 long-lived provider (${pid}): ${(scan.bytesScanned / 1e6).toFixed(1)} MB scanned; name ${count("name")}, v1 ${count("v1")}, v2 ${count("v2")}\n` +
          copies.map((s) => `  ${s.label} ${inSocketBuffer(s) ? "raw HTTP response (socket buffer)" : "OTHER"}: …${shown(s.before.subarray(-120))}⟨V⟩${shown(s.after.subarray(0, 40))}…`).join("\n"),
      );
      expect(scan.bytesScanned).toBeGreaterThan(5 * 1024 * 1024);
      expect(count("name")).toBeGreaterThan(0);
      expect(count("v1")).toBe(0);
      expect(count("v2")).toBeLessThanOrEqual(1);
      expect(copies.filter((s) => !inSocketBuffer(s)).map((s) => `${s.label}: ${shown(s.before.subarray(-60))}⟨V⟩${shown(s.after.subarray(0, 20))}`)).toEqual([]);
    });
  }, 30_000);

  test("canonical JSON sorts keys at every level", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: "x" } })).toBe('{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}');
  });
});

describe("vault provider: throttling", () => {
  test("429s are retried after Retry-After and the call succeeds; the server saw the retries", async () => {
    const front = startFront({ retryAfter: "1" });
    try {
      await using(provider({ config: { address: front.url } }), async (p) => {
        await p.health();
        vault.state.throttleNext(2);
        const started = performance.now();
        const [fp] = await p.fingerprint([{ name: "app/db" }]);
        const elapsed = performance.now() - started;
        expect(fp?.fingerprint).toStartWith("v1@");
        expect(elapsed).toBeGreaterThanOrEqual(1900);
        const metadata = front.seen.filter((s) => s.path === "/v1/secret/metadata/app/db").map((s) => s.status);
        expect(metadata).toEqual([429, 429, 200]);
      });
    } finally {
      vault.state.throttleNext(0);
      front.stop();
    }
  });

  test("a sustained throttle gives PROVIDER_THROTTLED after a bounded number of backed-off requests", async () => {
    const front = startFront();
    const refs = Array.from({ length: 200 }, (_, i) => ({ name: `bulk/s${i}` }));
    try {
      await using(provider({ config: { address: front.url } }), async (p) => {
        await p.health();
        vault.state.throttleNext(1_000_000);
        const started = performance.now();
        const error = await p.fingerprint(refs).then(() => undefined, (e) => e);
        expect(error).toMatchObject({ code: "PROVIDER_THROTTLED" });
        expect(error.retryAfterMs).toBeGreaterThan(0);
        expect(error.message).toContain('vault provider "hv"');
        const throttled = front.seen.filter((s) => s.status === 429).length;
        expect(throttled).toBeGreaterThan(THROTTLE_MAX_RETRIES);
        expect(throttled).toBeLessThanOrEqual(MAX_PARALLEL_REQUESTS * (THROTTLE_MAX_RETRIES + 1));
        // Backed off (250 + 500 + 1000 ms), not a hot loop.
        expect(performance.now() - started).toBeGreaterThanOrEqual(1700);
      });
    } finally {
      vault.state.throttleNext(0);
      front.stop();
    }
  });

  test("a Retry-After beyond the retry budget fails at once and passes the delay on", async () => {
    const front = startFront({ retryAfter: "120" });
    try {
      await using(provider({ config: { address: front.url } }), async (p) => {
        await p.health();
        vault.state.throttleNext(1);
        const error = await p.fetch([{ name: "app/db" }]).then(() => undefined, (e) => e);
        expect(error).toMatchObject({ code: "PROVIDER_THROTTLED", retryAfterMs: 120_000 });
        expect(front.seen.filter((s) => s.status === 429)).toHaveLength(1);
      });
    } finally {
      vault.state.throttleNext(0);
      front.stop();
    }
  });
});

describe("vault provider: authentication", () => {
  test("an invalid token is PROVIDER_AUTH naming the provider, never the token", async () => {
    const bogus = "hvs.PlantedBogusToken0123456789abcdef";
    await using(provider({ name: "corp-vault", env: { VAULT_TOKEN: bogus } }), async (p) => {
      const error = await p.fingerprint([{ name: "app/db" }]).then(() => undefined, (e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH" });
      expect(error.message).toContain('vault provider "corp-vault"');
      expect(error.message).not.toContain(bogus);
      expect(error.message).not.toContain("PlantedBogusToken");
      expect(await p.health()).toMatchObject({ ok: false });
    });
  });

  test("an expired token is PROVIDER_AUTH at start, and in-band once it expires mid-run", async () => {
    const expired = vault.state.createToken({ policies: ["root"], ttlSeconds: 60 });
    const expiring = vault.state.createToken({ policies: ["root"], ttlSeconds: 600 });
    vault.state.advanceClock(120);
    await using(provider({ env: { VAULT_TOKEN: expired } }), async (p) => {
      const error = await p.fetch([{ name: "app/db" }]).then(() => undefined, (e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH" });
      expect(error.message).not.toContain(expired);
    });
    await using(provider({ env: { VAULT_TOKEN: expiring } }), async (p) => {
      expect((await p.fingerprint([{ name: "app/db" }]))[0]?.fingerprint).toBeDefined();
      vault.state.advanceClock(700);
      // A fetch runs in a fresh process: the expired token fails its start, or its call in-band.
      const outcome = await p.fetch([{ name: "app/db" }]).then(
        (items) => {
          expect(items[0]?.value).toBeUndefined();
          return items[0]?.error;
        },
        (e) => e,
      );
      expect(outcome?.code).toBe("PROVIDER_AUTH");
      expect(outcome?.message).not.toContain(expiring);
    });
  });

  test("AppRole logs in with role_id and secret_id from the agent's credentials", async () => {
    vault.state.addAppRole({ roleId: "dso-role", secretId: "planted-secret-id-555", policies: ["metadata-only"] });
    const p = provider({
      auth: { method: "approle" },
      env: { VAULT_TOKEN: "", VAULT_ROLE_ID: "dso-role", VAULT_SECRET_ID: "planted-secret-id-555" },
    });
    await using(p, async () => {
      const before = snapshot();
      const [fp] = await p.fingerprint([{ name: "app/db" }]);
      expect(fp?.fingerprint).toStartWith("v1@");
      expect(delta(before)).toEqual({ login: 1, lookupSelf: 1, metadata: 1 });
    });
  });

  test("a wrong AppRole secret_id is PROVIDER_AUTH without the secret_id", async () => {
    const p = provider({
      auth: { method: "approle", params: { role_id: "dso-role", secret_id: "planted-wrong-secret-id" } },
      env: { VAULT_TOKEN: "" },
    });
    await using(p, async () => {
      const error = await p.fingerprint([{ name: "app/db" }]).then(() => undefined, (e) => e);
      expect(error).toMatchObject({ code: "PROVIDER_AUTH" });
      expect(error.message).toContain("AppRole login");
      expect(error.message).not.toContain("planted-wrong-secret-id");
    });
  });

  test("a renewable token is renewed at about 2/3 of its TTL", async () => {
    const token = vault.state.createToken({ policies: ["root"], ttlSeconds: 3 });
    await using(provider({ env: { VAULT_TOKEN: token } }), async (p) => {
      // The token is looked up during the first call, after t0: its renewal is due 2 s later.
      const before = snapshot();
      const t0 = performance.now();
      await p.fingerprint([{ name: "app/db" }]);
      while ((delta(before).renewSelf ?? 0) === 0 && performance.now() - t0 < 4000) await Bun.sleep(20);
      const renewedAfterMs = performance.now() - t0;
      expect(delta(before).renewSelf).toBe(1);
      // 2/3 of the TTL the lookup reported (a little under 3 s by then): not at once, not after expiry.
      expect(renewedAfterMs).toBeGreaterThanOrEqual(1500);
      expect(renewedAfterMs).toBeLessThan(3000);
      // Still valid after the original 3 s: the renewal worked.
      await Bun.sleep(800);
      expect((await p.fingerprint([{ name: "app/db" }]))[0]?.fingerprint).toStartWith("v1@");
    });
  });

  test("with AppRole, a failed renewal logs in again before the token expires", async () => {
    vault.state.addAppRole({ roleId: "short-role", secretId: "short-secret", policies: ["metadata-only"], tokenTtlSeconds: 3 });
    const p = provider({ auth: { method: "approle", params: { role_id: "short-role", secret_id: "short-secret" } }, env: { VAULT_TOKEN: "" } });
    await using(p, async () => {
      await p.fingerprint([{ name: "app/db" }]);
      // Revoke every token the role got: the scheduled renewal is then denied.
      for (const [id, t] of vault.state.tokens) if (t.policies.includes("metadata-only") && t.creationTtl === 3) vault.state.tokens.delete(id);
      const before = snapshot();
      await Bun.sleep(2700);
      expect(delta(before)).toMatchObject({ renewSelf: 1, login: 1 });
      expect((await p.fingerprint([{ name: "app/db" }]))[0]?.fingerprint).toStartWith("v1@");
    });
  });
});

describe("vault provider: namespaces and TLS", () => {
  test("config.namespace (or VAULT_NAMESPACE) selects the namespace", async () => {
    vault.state.writeSecret("secret/ns-only", { k: "in-team-a" }, { namespace: "team-a" });
    await using(provider({ config: { namespace: "team-a" } }), async (p) => {
      expect((legacyItems(await p.fetch([{ name: "ns-only" }])))[0]?.value?.data).toEqual({ k: "in-team-a" });
    });
    await using(provider({ env: { VAULT_NAMESPACE: "team-a" } }), async (p) => {
      expect((legacyItems(await p.fetch([{ name: "ns-only" }])))[0]?.value?.data).toEqual({ k: "in-team-a" });
    });
    await using(provider({}), async (p) => {
      expect((legacyItems(await p.fetch([{ name: "ns-only" }])))[0]?.error?.code).toBe("SECRET_NOT_FOUND");
    });
  });

  test("HTTPS with config.ca_cert works; without it the certificate is refused", async () => {
    const front = startFront({ tls: cert });
    try {
      await using(provider({ config: { address: front.url, ca_cert: cert.certPath } }), async (p) => {
        expect((legacyItems(await p.fetch([{ name: "app/db" }])))[0]?.value?.data.username).toBe("app");
      });
      await using(provider({ config: { address: front.url } }), async (p) => {
        const error = await p.fetch([{ name: "app/db" }]).then(() => undefined, (e) => e);
        expect(error).toMatchObject({ code: "PROVIDER_UNAVAILABLE" });
        expect(error.message).toContain("TLS verification");
      });
    } finally {
      front.stop();
    }
  });

  test("a redirect is not followed, so the token never goes to the host it names", async () => {
    let leaked = 0;
    const elsewhere = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (leaked++, new Response("{}")) });
    const redirecting = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => Response.redirect(`http://127.0.0.1:${elsewhere.port}${new URL(req.url).pathname}`, 307),
    });
    try {
      await using(provider({ config: { address: `http://127.0.0.1:${redirecting.port}` } }), async (p) => {
        const error = await p.fingerprint([{ name: "app/db" }]).then(() => undefined, (e) => e);
        expect(error).toMatchObject({ code: "PROVIDER_UNAVAILABLE" });
        expect(error.message).toContain("redirected");
        expect(leaked).toBe(0);
      });
    } finally {
      redirecting.stop(true);
      elsewhere.stop(true);
    }
  });

  test("tls_skip_verify works with a loud warning, and no secret reaches the provider's stderr", async () => {
    const front = startFront({ tls: cert });
    vault.state.addAppRole({ roleId: "log-role", secretId: "planted-log-secret-id", policies: ["root"] });
    try {
      const { replies, raws, stderr } = await rawProviderRun(
        {
          name: "hv",
          type: "vault",
          config: { address: front.url, tls_skip_verify: "true" },
          auth: { method: "approle" },
          credentials: { VAULT_ROLE_ID: "log-role", VAULT_SECRET_ID: "planted-log-secret-id" },
        },
        [
          { method: "fetch", params: { refs: [{ name: "app/db" }, { name: "missing" }] } },
          { method: "fingerprint", params: { refs: [{ name: "app/db" }] } },
          { method: "health" },
        ],
      );
      // The value travels in the raw section; the JSON names its keys and lengths only.
      expect(replies[1]).toMatchObject({ result: { items: [{ value: { keys: expect.arrayContaining([{ key: "password", bytes: PLANTED_PASSWORD.length }]) } }, {}] } });
      expect(JSON.stringify(replies[1])).not.toContain(PLANTED_PASSWORD);
      expect(raws[1]).toContain(PLANTED_PASSWORD);
      expect(stderr).toContain("TLS VERIFICATION IS OFF");
      expect(stderr).toContain("logged in to Vault with AppRole");
      for (const planted of [PLANTED_PASSWORD, "planted-log-secret-id", "hvs."]) expect(stderr).not.toContain(planted);
      // Nor in the error replies.
      expect(JSON.stringify(replies.slice(1).map((r) => r.result?.items?.map((i: any) => i.error)))).not.toContain(PLANTED_PASSWORD);
    } finally {
      front.stop();
    }
  });
});

describe("vault provider: configuration", () => {
  const params = (config: Record<string, string>, extra: Partial<ConfigureParams> = {}): ConfigureParams => ({
    name: "hv",
    type: "vault",
    config,
    credentials: { VAULT_TOKEN: "t" },
    ...extra,
  });

  test("defaults follow the Go DSO: loopback address, mount `secret`, KV v2, token from VAULT_TOKEN", () => {
    expect(parseVaultSettings(params({}), {})).toMatchObject({
      address: DEFAULT_VAULT_ADDRESS,
      mount: "secret",
      kvVersion: 2,
      skipTlsVerify: false,
      auth: { method: "token", token: "t" },
    });
    expect(parseVaultSettings(params({}, { credentials: { VAULT_TOKEN: "hvs.from-a-file\n" } }), {}).auth).toEqual({
      method: "token",
      token: "hvs.from-a-file",
    });
    expect(parseVaultSettings(params({ token: "from-config" }), { VAULT_ADDR: "https://vault.example:8200/" })).toMatchObject({
      address: "https://vault.example:8200",
      auth: { token: "from-config" },
    });
  });

  test("every problem names its field", () => {
    const bad: Array<[ConfigureParams, string]> = [
      [params({ bogus: "1" }), "providers.hv.config.bogus: unknown key"],
      [params({ address: "https://user:pw@vault.example" }), "providers.hv.config.address: must not carry credentials"],
      [params({ kv_version: "3" }), "providers.hv.config.kv_version"],
      [params({ tls_skip_verify: "maybe" }), "providers.hv.config.tls_skip_verify"],
      [params({ ca_cert: "/nonexistent/ca.pem" }), "providers.hv.config.ca_cert: cannot read"],
      [params({ mount: "../sys" }), "providers.hv.config.mount"],
      [params({}, { credentials: {} }), "providers.hv.config.token: no Vault token"],
      [params({}, { auth: { method: "kubernetes" } }), "providers.hv.auth.method"],
      [params({}, { auth: { method: "approle", params: { role: "x" } } }), "providers.hv.auth.params.role"],
      [params({}, { auth: { method: "approle" } }), "providers.hv.auth.params.role_id"],
    ];
    for (const [p, message] of bad) expect(() => parseVaultSettings(p, {})).toThrow(message);
    // Plain http to another host is a risk that dso config validate and doctor warn about, not a refusal (issue 22).
    expect(parseVaultSettings(params({}), { VAULT_ADDR: "http://10.0.0.1:8200" }).address).toBe("http://10.0.0.1:8200");
    expect(parseVaultSettings(params({ address: "http://[::1]:8200" }), {}).address).toBe("http://[::1]:8200");
  });

  test("an unknown config key fails configure in the real process, naming the field", async () => {
    await using(provider({ config: { adress: "https://typo" } }), async (p) => {
      await expect(p.fingerprint([{ name: "app/db" }])).rejects.toThrow("providers.hv.config.adress: unknown key");
    });
  });
});
