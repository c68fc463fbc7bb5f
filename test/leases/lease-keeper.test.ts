// The lease keeper's logic with an injected clock and an in-memory backend that behaves like
// Vault's lease API (default_ttl, max_ttl, revocation); the wire-level behaviour is tested against
// the Vault test server in test/leases/lease-keeper-vault.test.ts.
import { describe, expect, test } from "bun:test";
import type { LeaseSpec } from "../../src/config/lease-spec.ts";
import type { SecretSpec } from "../../src/config/types.ts";
import { memoryLeaseBook, type LeaseBook } from "../../src/leases/lease-book.ts";
import { LeaseKeeper, type LeaseBackend, type LeaseEvents } from "../../src/leases/lease-keeper.ts";
import type { LeaseRecord } from "../../src/leases/lease-record.ts";

const lease = (over: Partial<LeaseSpec> = {}): LeaseSpec => ({
  engine: "database", kind: "creds", role: "app", params: {}, scope: "container", renewAt: 2 / 3, reissueMargin: 0.15, revokeOnRemove: true, revokeGraceMs: 1_000, ...over,
});
const spec = (over: Partial<LeaseSpec> = {}): SecretSpec & { lease: LeaseSpec } => ({
  name: "db", provider: "vault", inject: { type: "env" }, targets: { containers: [], labels: {}, volumes: [] }, mappings: {},
  rotation: { enabled: true, strategy: "signal", signal: "SIGHUP", healthCheckTimeoutMs: 1000 }, lease: lease(over),
});

/** Vault's lease rules in memory: ttl 6 s, max_ttl 12 s; `down` fails every call. */
function fakeVault(clock: { t: number }, ttlS = 6, maxS = 12) {
  const leases = new Map<string, { expires: number; max: number; revoked: boolean }>();
  let n = 0;
  const state = { down: false, issued: 0, renewed: 0, revoked: [] as string[], leases };
  const check = () => {
    if (state.down) throw Object.assign(new Error("provider vault: Vault answered 503"), { code: "PROVIDER_UNAVAILABLE" });
  };
  const backend: LeaseBackend = {
    async issue() {
      check();
      const id = `database/creds/app/${++n}`;
      leases.set(id, { expires: clock.t + ttlS * 1000, max: clock.t + maxS * 1000, revoked: false });
      state.issued++;
      return { value: new Map([["username", new TextEncoder().encode(`user-${n}`)]]), lease: { leaseId: id, renewable: true, expiresAtMs: clock.t + ttlS * 1000 } };
    },
    async renew(record, increment) {
      check();
      const l = leases.get(record.leaseId!)!;
      if (l.revoked || l.expires <= clock.t) throw new Error("invalid lease");
      const granted = Math.min(increment * 1000, l.max - clock.t);
      l.expires = clock.t + granted;
      state.renewed++;
      return { expiresAtMs: l.expires, capped: granted < increment * 1000 };
    },
    async revoke(record) {
      check();
      leases.get(record.leaseId!)!.revoked = true;
      state.revoked.push(record.leaseId!);
    },
  };
  return { backend, state };
}

function setup(opts: { specOver?: Partial<LeaseSpec>; book?: LeaseBook; clock?: { t: number } } = {}) {
  const clock = opts.clock ?? { t: 1_000_000 };
  const vault = fakeVault(clock);
  const announced: string[][] = [];
  const events: Array<[string, ...unknown[]]> = [];
  const record = (name: keyof LeaseEvents) => (...args: unknown[]) => events.push([name, ...args]);
  const s = spec(opts.specOver);
  const keeper = new LeaseKeeper({
    spec: (name) => (name === "db" ? s : undefined),
    backend: () => vault.backend,
    book: opts.book ?? memoryLeaseBook(),
    fingerprint: (key) => `fp(${key})`,
    onReplaceWanted: (names) => announced.push(names),
    events: { issued: record("issued"), renewed: record("renewed"), revoked: record("revoked"), failed: record("failed"), alarm: record("alarm") },
    now: () => clock.t,
  });
  /** Advance the clock in steps, ticking at each, as the timer would. */
  const runFor = async (ms: number, step = 100) => {
    for (let end = clock.t + ms; clock.t < end; clock.t += step) await keeper.tick();
  };
  return { keeper, clock, vault, announced, events, runFor };
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

describe("lease keeper", () => {
  test("two containers get two distinct credentials; one container asking twice at once gets one", async () => {
    const { keeper, vault } = setup();
    const [a1, a2] = await Promise.all([keeper.credential("db", "container-a"), keeper.credential("db", "container-a")]);
    const b = await keeper.credential("db", "container-b");
    expect(vault.state.issued).toBe(2);
    expect(text(a1.value.get("username"))).toBe(text(a2.value.get("username")));
    expect(text(b.value.get("username"))).not.toBe(text(a1.value.get("username")));
    expect(a1.fingerprint).toBe(keeper.fingerprintFor("db", "container-a"));
    expect(b.fingerprint).not.toBe(a1.fingerprint);
  });

  test("shared scope: one credential for every consumer, also one that comes later; a replacement is one for all", async () => {
    const { keeper, vault } = setup({ specOver: { scope: "shared" } });
    const a = await keeper.credential("db", "a");
    const b = await keeper.credential("db", "b"); // a later wave: served the same credential, not a new one
    expect(keeper.fingerprintFor("db", "b")).toBe(keeper.fingerprintFor("db", "a"));
    expect(text(b.value.get("username"))).toBe(text(a.value.get("username")));
    expect(vault.state.issued).toBe(1);
    keeper.consumerRemoved("a"); // a shared lease is not one container's to revoke
    expect(keeper.views().map((v) => v.state)).toEqual(["active"]);
  });

  test("renewed at 2/3 of the lease, then replaced before max_ttl: announced once, the old lease revoked after the grace period", async () => {
    const { keeper, vault, announced, runFor, clock, events } = setup({ specOver: { revokeGraceMs: 500 } });
    await keeper.credential("db", "c1");
    const first = keeper.fingerprintFor("db", "c1");
    await runFor(3_900); // 2/3 of 6 s = 4 s: not yet
    expect(vault.state.renewed).toBe(0);
    await runFor(200);
    expect(vault.state.renewed).toBe(1); // at 4 s: renewed to 10 s
    expect(announced).toEqual([]);
    await runFor(4_000); // at 8 s: renewal capped at max_ttl (12 s)
    expect(vault.state.renewed).toBe(2);
    // Capped: the replacement is wanted before expiry minus 15 % of the 6 s lease (12 - 0.9 s = 11.1 s).
    await runFor(2_900);
    expect(announced).toEqual([]);
    await runFor(200);
    expect(announced).toEqual([["db"]]);
    expect(keeper.fingerprintFor("db", "c1")).toBe(`${first}:replace`);
    // The reconciler delivers it: a new credential, the old one revoked after 0.5 s.
    const replaced = await keeper.credential("db", "c1");
    expect(replaced.fingerprint).not.toBe(first);
    expect(keeper.fingerprintFor("db", "c1")).toBe(replaced.fingerprint);
    expect(vault.state.issued).toBe(2);
    expect(vault.state.revoked).toEqual([]);
    await runFor(400);
    expect(vault.state.revoked).toEqual([]);
    await runFor(200);
    expect(vault.state.revoked).toEqual(["database/creds/app/1"]);
    expect(events.filter(([e]) => e === "revoked").map(([, , reason]) => reason)).toEqual(["replaced"]);
    expect([...vault.state.leases.values()][0]!.expires).toBeGreaterThan(clock.t); // revoked while still valid
  });

  test("container removal revokes its lease within the grace period, not before", async () => {
    const { keeper, vault, runFor } = setup({ specOver: { revokeGraceMs: 2_000 } });
    await keeper.credential("db", "gone");
    keeper.consumerRemoved("gone");
    await runFor(1_900);
    expect(vault.state.revoked).toEqual([]);
    await runFor(200);
    expect(vault.state.revoked).toEqual(["database/creds/app/1"]);
    expect(keeper.views()).toEqual([]);
  });

  test("a Vault outage longer than the lease raises the alarm at the first failed renewal, well before expiry, and retries with backoff", async () => {
    const { keeper, vault, runFor, events } = setup();
    await keeper.credential("db", "c1");
    vault.state.down = true;
    await runFor(7_000);
    const alarms = events.filter(([e]) => e === "alarm");
    expect(alarms).toHaveLength(1);
    const [, , operation, , secondsLeft] = alarms[0]!;
    expect(operation).toBe("renew");
    expect(secondsLeft as number).toBeGreaterThan(1.5); // raised at ~4 s of a 6 s lease
    const failures = events.filter(([e]) => e === "failed").length;
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(failures).toBeLessThan(10); // backoff, not a busy loop
    vault.state.down = false;
  });

  test("a consumer removed while the agent was away is released by the next full pass; one issued after the list is not", async () => {
    const { keeper, vault, runFor, clock } = setup({ specOver: { revokeGraceMs: 0 } });
    await keeper.credential("db", "gone");
    clock.t += 10;
    const listedAt = clock.t;
    clock.t += 10;
    await keeper.credential("db", "new");
    keeper.retainConsumers(new Set(["other"]), listedAt);
    await runFor(100);
    expect(vault.state.revoked).toEqual(["database/creds/app/1"]);
    expect(keeper.views().map((v) => v.consumer)).toEqual(["new"]);
  });

  test("an agent restart loads the records, renews and issues nothing", async () => {
    const saved: LeaseRecord[][] = [];
    const book: LeaseBook = { load: async () => structuredClone(saved.at(-1) ?? []), save: async (r) => void saved.push(structuredClone([...r])) };
    const clock = { t: 1_000_000 };
    const before = setup({ book, clock });
    await before.keeper.credential("db", "c1");
    const fingerprint = before.keeper.fingerprintFor("db", "c1");
    const after = setup({ book, clock });
    await after.keeper.load();
    expect(after.keeper.fingerprintFor("db", "c1")).toBe(fingerprint);
    // The new fake vault knows nothing of the lease: share the old one's.
    after.vault.state.leases.set("database/creds/app/1", before.vault.state.leases.get("database/creds/app/1")!);
    await after.runFor(4_100);
    expect(after.vault.state.renewed).toBe(1);
    expect(after.vault.state.issued).toBe(0);
  });

  test("a non-renewable credential (a certificate) is replaced before its expiry minus the margin", async () => {
    const { keeper, vault, announced, runFor } = setup();
    vault.backend.issue = async () => ({ value: new Map(), lease: { serial: "aa:bb", renewable: false, expiresAtMs: 1_000_000 + 10_000 } });
    await keeper.credential("db", "web");
    await runFor(8_400);
    expect(announced).toEqual([]);
    await runFor(200); // 10 s - 15 % = 8.5 s
    expect(announced).toEqual([["db"]]);
  });
});
