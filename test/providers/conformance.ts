/**
 * The provider conformance suite: the same behaviour asked of every provider, each driven in
 * process (its factory, as `dso provider <type>` would run it) against its local server in
 * test/support. A target says what its service allows (names, sizes, binary) and how to plant
 * values and faults; a fault a service cannot have (a file has no throttling) is left out by the
 * target, and the test says so in its name. Faults come from the servers' own switches or from a
 * pass-through proxy (faultProxy) that answers the way the service does.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { FetchItem, ProviderClient, SecretRef } from "../../providers/types.ts";

export interface Faults {
  /** Every request is refused as the service refuses a caller without permission. */
  deny?(): void;
  /** Every request is throttled, with Retry-After in seconds where the service sends one. */
  throttle?(retryAfterSeconds: number): void;
  /** Every request gets 200 with a body that is not the service's reply. */
  malformed?(): void;
  /** Every request waits this long first. */
  delay?(ms: number): void;
  clear(): void;
}

export interface ConformanceTarget {
  type: string;
  /** Names that together use every character the service allows in a name. */
  allowedNames: string[];
  /** The largest value the service stores. */
  maxValueBytes: number;
  /** The Retry-After the throttling fault sends (default 30 s: beyond every provider's own retry budget). */
  throttleRetryAfterSeconds?: number;
  /** How far apart two writes must be for the service's change marker to tell them apart. */
  changeResolutionMs?: number;
  /** Whether the service stores bytes that are not UTF-8. */
  binary: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  client(): Promise<ProviderClient>;
  /** Creates the secret or adds a new current version. */
  put(name: string, value: string | Uint8Array): void | Promise<void>;
  /** Value reads the service has answered; absent where fingerprints are made from values by design (file). */
  valueReads?(): number;
  faults: Faults;
}

const utf8 = new TextEncoder();
const FAULT_CODES_AUTH = ["PROVIDER_AUTH"];

/** A fetched value's bytes for `key`, whatever form the provider returned. */
export function valueBytes(item: FetchItem | undefined, key = "value"): Uint8Array | undefined {
  const content = item?.value?.data[key];
  if (content === undefined) return undefined;
  if (content instanceof Uint8Array) return content;
  return item!.value!.encoding === "base64" ? new Uint8Array(Buffer.from(content, "base64")) : utf8.encode(content);
}

/** The error of `ref`'s answer, in band or thrown for the whole call. */
async function outcomeOf<T extends { error?: { code: string; retryAfterMs?: number } }>(call: Promise<T[]>): Promise<{ code?: string; retryAfterMs?: number; items?: T[] }> {
  try {
    const items = await call;
    return { code: items[0]?.error?.code, retryAfterMs: items[0]?.error?.retryAfterMs, items };
  } catch (error) {
    // What the provider host would send: an untyped throw becomes INTERNAL.
    const e = error as { code?: string; rpcCode?: string; retryAfterMs?: number };
    return { code: e.rpcCode ?? e.code ?? "INTERNAL", retryAfterMs: e.retryAfterMs };
  }
}

const signal = (ms = 25_000) => AbortSignal.timeout(ms);

/** A pass-through proxy whose answers can be replaced by the service's own fault replies. */
export function faultProxy(target: string, replies: { deny: () => Response; throttle: (retryAfterSeconds: number) => Response; malformed: () => Response }) {
  let fault: (() => Response) | undefined;
  let delayMs = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    async fetch(req) {
      if (delayMs) await Bun.sleep(delayMs);
      if (fault) return fault();
      const url = new URL(req.url);
      const headers = new Headers(req.headers);
      headers.delete("host");
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      const upstream = await fetch(`${target}${url.pathname}${url.search}`, { method: req.method, headers, body, redirect: "manual" });
      return new Response(await upstream.arrayBuffer(), { status: upstream.status, headers: upstream.headers });
    },
  });
  const faults: Required<Faults> = {
    deny: () => void (fault = replies.deny),
    throttle: (s) => void (fault = () => replies.throttle(s)),
    malformed: () => void (fault = replies.malformed),
    delay: (ms) => void (delayMs = ms),
    clear: () => {
      fault = undefined;
      delayMs = 0;
    },
  };
  return { url: `http://127.0.0.1:${server.port}`, faults, stop: () => server.stop(true) };
}

export function providerConformance(t: ConformanceTarget): void {
  describe(`conformance: ${t.type}`, () => {
    let client: ProviderClient;
    const fresh = async () => {
      client = await t.client();
      return client;
    };
    const fingerprintOf = async (ref: SecretRef) => (await client.fingerprint([ref], signal()))[0];
    const fetchOf = async (ref: SecretRef) => (await client.fetch([ref], signal()))[0];

    beforeAll(() => t.start());
    afterAll(() => t.stop());

    test("fingerprint follows a change; polling reads no value", async () => {
      await t.put("conf-rotating", "first-value");
      await fresh();
      const before = await fingerprintOf({ name: "conf-rotating" });
      expect(before?.fingerprint).toBeString();
      // A service whose change marker has a coarse resolution (Azure: one second) needs a tick between writes.
      await Bun.sleep(t.changeResolutionMs ?? 5);
      await t.put("conf-rotating", "second-value");
      const reads = t.valueReads?.();
      const after = await fingerprintOf({ name: "conf-rotating" });
      expect(after?.fingerprint).toBeString();
      expect(after?.fingerprint).not.toBe(before!.fingerprint!);
      if (reads !== undefined) expect(t.valueReads!()).toBe(reads);
    });

    test("fetch returns the value with the fingerprint polling reports for it", async () => {
      const item = await fetchOf({ name: "conf-rotating" });
      expect(new TextDecoder().decode(valueBytes(item))).toBe("second-value");
      const polled = await fingerprintOf({ name: "conf-rotating" });
      expect(item?.fingerprint).toBe(polled!.fingerprint!);
    });

    test("a missing secret is SECRET_NOT_FOUND for itself alone", async () => {
      const polled = await client.fingerprint([{ name: "conf-missing" }, { name: "conf-rotating" }], signal());
      expect(polled[0]?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(polled[1]?.fingerprint).toBeString();
      const fetched = await client.fetch([{ name: "conf-missing" }, { name: "conf-rotating" }], signal());
      expect(fetched[0]?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(fetched[0]?.value).toBeUndefined();
      expect(valueBytes(fetched[1])).toBeDefined();
    });

    test.skipIf(!t.faults.deny)("permission denied is PROVIDER_AUTH, for polling and fetching", async () => {
      const c = await fresh();
      try {
        t.faults.deny!();
        const polled = await outcomeOf(c.fingerprint([{ name: "conf-rotating" }], signal()));
        expect(FAULT_CODES_AUTH).toContain(polled.code!);
        const fetched = await outcomeOf(c.fetch([{ name: "conf-rotating" }], signal()));
        expect(FAULT_CODES_AUTH).toContain(fetched.code!);
        expect(fetched.items?.[0]?.value).toBeUndefined();
      } finally {
        t.faults.clear();
      }
    });

    test.skipIf(!t.faults.throttle)("sustained throttling is PROVIDER_THROTTLED with the wait the service asked for", async () => {
      const c = await fresh();
      try {
        t.faults.throttle!(t.throttleRetryAfterSeconds ?? 30);
        const started = Date.now();
        const polled = await outcomeOf(c.fingerprint([{ name: "conf-rotating" }], signal()));
        expect(polled.code).toBe("PROVIDER_THROTTLED");
        expect(polled.retryAfterMs).toBeGreaterThan(0);
        expect(Date.now() - started).toBeLessThan(15_000);
      } finally {
        t.faults.clear();
      }
    }, 20_000);

    test.skipIf(!t.faults.malformed)("a malformed reply is an error, never a value, and the next call works", async () => {
      // Typed as the service's fault: not a crash (INTERNAL), not "not found" (the secret may be fine).
      // Once on a fresh client (its sign-in or token lookup gets the bad reply), once on a client
      // that has signed in (the secret's own reads get it).
      for (const warm of [false, true]) {
        const c = await fresh();
        if (warm) await c.fingerprint([{ name: "conf-rotating" }], signal());
        try {
          t.faults.malformed!();
          const polled = await outcomeOf(c.fingerprint([{ name: "conf-rotating" }], signal()));
          expect([warm, polled.code]).toEqual([warm, "PROVIDER_UNAVAILABLE"]);
          const fetched = await outcomeOf(c.fetch([{ name: "conf-rotating" }], signal()));
          expect([warm, fetched.code]).toEqual([warm, "PROVIDER_UNAVAILABLE"]);
          expect(fetched.items?.[0]?.value).toBeUndefined();
        } finally {
          t.faults.clear();
        }
      }
      const c = await fresh();
      expect((await c.fingerprint([{ name: "conf-rotating" }], signal()))[0]?.fingerprint).toBeString();
    }, 20_000);

    test.skipIf(!t.faults.delay)("a call stops soon after its signal aborts (a hung service)", async () => {
      const c = await fresh();
      try {
        t.faults.delay!(8_000);
        const started = Date.now();
        const polled = await outcomeOf(c.fingerprint([{ name: "conf-rotating" }], AbortSignal.timeout(300)));
        expect(polled.code).toBeString();
        expect(Date.now() - started).toBeLessThan(3_000);
      } finally {
        t.faults.clear();
      }
    }, 15_000);

    test("the largest value the service stores comes back whole", async () => {
      const big = "x".repeat(t.maxValueBytes - 1) + "!";
      await t.put("conf-huge", big);
      const c = await fresh();
      const bytes = valueBytes((await c.fetch([{ name: "conf-huge" }], signal()))[0]);
      expect(bytes?.length).toBe(t.maxValueBytes);
      expect(bytes?.[t.maxValueBytes - 1]).toBe(0x21);
    });

    test.skipIf(!t.binary)("a binary value (every byte 0-255, not UTF-8) comes back byte for byte", async () => {
      const all = new Uint8Array(256).map((_, i) => (i * 7 + 0xff) & 0xff);
      await t.put("conf-binary", all);
      const bytes = valueBytes((await client.fetch([{ name: "conf-binary" }], signal()))[0]);
      expect(bytes && Buffer.from(bytes).equals(Buffer.from(all))).toBe(true);
    });

    test("names with every allowed character are polled and fetched", async () => {
      for (const [i, name] of t.allowedNames.entries()) await t.put(name, `named-${i}`);
      const refs = t.allowedNames.map((name) => ({ name }));
      const polled = await client.fingerprint(refs, signal());
      expect(polled.map((p) => p.error?.message ?? "ok")).toEqual(refs.map(() => "ok"));
      const fetched = await client.fetch(refs, signal());
      expect(fetched.map((f) => new TextDecoder().decode(valueBytes(f)))).toEqual(refs.map((_, i) => `named-${i}`));
    });
  });
}
