/**
 * The lease keeper: the one owner of dynamic (leased) credentials, an engine beside the poll
 * scheduler. It issues a credential once per consumer (a container, or all of them for
 * `scope: shared`) when a delivery asks for its value, renews the lease before its renewal point,
 * asks for a replacement when renewal cannot extend it (announced on the change path a polled
 * change uses, so the reconciler delivers it and runs the container's strategy once), revokes the
 * old lease after its grace period, and revokes a removed consumer's lease. Failures are retried
 * with backoff and raised (`alarm`) on the first one, at the renewal point, well before expiry.
 *
 * Records are metadata (lease-record.ts), persisted in RAM on the host (lease-book.ts); the value
 * is returned to the delivery's window and never kept here. Time is a parameter (`now`); `tick`
 * does what is due, and `run` drives it with a timer.
 */
import type { LeaseSpec } from "../config/lease-spec.ts";
import type { SecretSpec } from "../config/types.ts";
import { copySecretBytes, wipeSecretBytes, type SecretBytes } from "../rpc/wire-values.ts";
import type { FetchedSecret } from "../secrets/types.ts";
import { mapLimit } from "../util/map-limit.ts";
import type { LeaseBook } from "./lease-book.ts";
import { plan, retryDelay, SHARED_CONSUMER, type LeaseRecord } from "./lease-record.ts";

/** What issuing returns: the value for the delivery's window, and the lease's metadata. */
export interface IssuedCredential {
  value: SecretBytes;
  lease: { leaseId?: string; serial?: string; renewable: boolean; expiresAtMs: number };
}

/** The provider calls a lease needs (the vault provider's processes implement them). */
export interface LeaseBackend {
  issue(spec: SecretSpec & { lease: LeaseSpec }, signal: AbortSignal): Promise<IssuedCredential>;
  renew(record: LeaseRecord, incrementSeconds: number, signal: AbortSignal): Promise<{ expiresAtMs: number; capped: boolean }>;
  revoke(record: LeaseRecord, signal: AbortSignal): Promise<void>;
  /** Whether Vault still knows the lease, and its expiry there (after an agent restart). */
  lookup?(record: LeaseRecord, signal: AbortSignal): Promise<{ valid: boolean; expiresAtMs: number }>;
}

export type LeaseOperation = "issue" | "renew" | "replace" | "revoke";

/** Told about each step (metrics, audit, notifications); never a value. */
export interface LeaseEvents {
  issued(record: LeaseRecord, replacement: boolean): void;
  renewed(record: LeaseRecord): void;
  revoked(record: LeaseRecord, reason: "replaced" | "consumer removed" | "secret removed"): void;
  failed(record: LeaseRecord | { secret: string; consumer: string }, operation: LeaseOperation, error: unknown): void;
  /** Raised once per trouble, well before expiry: `secondsLeft` until the credential stops working. */
  alarm(record: LeaseRecord, operation: LeaseOperation, error: unknown, secondsLeft: number): void;
}

export interface LeaseKeeperOptions {
  /** The live spec of a secret, if it is (still) dynamic. */
  spec(secret: string): (SecretSpec & { lease: LeaseSpec }) | undefined;
  backend(provider: string): LeaseBackend | undefined;
  book: LeaseBook;
  /** A keyed fingerprint of a lease id or serial (the host key's), so markers tell leases apart. */
  fingerprint(leaseKey: string): string;
  /** Secrets whose credential must be replaced: the same path a polled change takes. */
  onReplaceWanted(secrets: string[]): void;
  events?: Partial<LeaseEvents>;
  now?: () => number;
  /** Per call to Vault. */
  callTimeoutMs?: number;
}

/** Seen in `dso ls` / `dso status`. */
export interface LeaseView {
  secret: string;
  consumer: string;
  state: LeaseRecord["state"];
  expiresAt: string;
  lastRenewalAt?: string;
  replaceWanted: boolean;
  failures: number;
}

const CALL_TIMEOUT_MS = 10_000;
/** Vault calls in flight at once in one tick (renewals of many leases due together). */
const PARALLEL_CALLS = 16;
const NO_EVENTS: LeaseEvents = { issued() {}, renewed() {}, revoked() {}, failed() {}, alarm() {} };
const NO_LEASE = "lease:none";

export class LeaseKeeper {
  private records: LeaseRecord[] = [];
  /** Issues under way per consumer; joiners each take a copy, the last one out wipes the original. */
  private readonly inFlight = new Map<string, { issued: Promise<IssuedCredential>; waiters: number }>();
  /**
   * `scope: shared` only: the one credential every consumer gets, kept (mlocked, never on disk)
   * for as long as its lease is active, since consumers arrive at different times; wiped when it
   * is replaced or retired. A per-container credential is never kept.
   */
  private readonly sharedValues = new Map<string, SecretBytes>();
  private readonly now: () => number;
  private timer?: ReturnType<typeof setTimeout>;
  private running = false;
  private ticking?: Promise<void>;
  private saving?: Promise<void>;
  private dirty = false;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Loads the records an earlier agent left (they are renewed, not issued again). */
  async load(): Promise<void> {
    this.records = await this.options.book.load();
    // Vault may have revoked some while no agent ran (token revoked, lease expired): look first.
    for (const record of this.records) if (record.state === "active" && record.leaseId) record.lookupWanted = true;
  }

  /** The consumer a container counts as for `secret`: itself, or everyone for a shared lease. */
  consumerOf(secret: string, container: string): string {
    return this.options.spec(secret)?.lease.scope === "shared" ? SHARED_CONSUMER : container;
  }

  isDynamic(secret: string): boolean {
    return this.options.spec(secret) !== undefined;
  }

  /**
   * What the container should have of `secret`: its lease's fingerprint; something else when no
   * lease exists yet or a replacement is wanted, so the reconciler delivers.
   */
  fingerprintFor(secret: string, container: string): string {
    const record = this.active(secret, this.consumerOf(secret, container));
    if (!record) return NO_LEASE;
    const fp = this.fingerprintOf(record);
    return record.replaceWanted ? `${fp}:replace` : fp;
  }

  /**
   * The credential for a delivery to `container`: issued now, once (concurrent asks for one
   * consumer share one issue, each with its own copy to wipe). An existing lease is replaced
   * (issued anew, the old one retired): a delivery asks only when the container lacks the current
   * credential or a replacement is due.
   */
  async credential(secret: string, container: string, signal?: AbortSignal): Promise<FetchedSecret> {
    const spec = this.options.spec(secret);
    if (!spec) throw new Error(`secret "${secret}" is not dynamic`);
    const consumer = this.consumerOf(secret, container);
    const shared = consumer === SHARED_CONSUMER ? this.active(secret, consumer) : undefined;
    const kept = shared && !shared.replaceWanted ? this.sharedValues.get(secret) : undefined;
    if (shared && kept) return { value: copySecretBytes(kept), fingerprint: this.fingerprintOf(shared) };
    const key = `${secret}\0${consumer}`;
    let pending = this.inFlight.get(key);
    if (!pending) {
      const entry = { issued: this.issue(spec, consumer, signal), waiters: 0 };
      entry.issued.then(
        () => {},
        () => this.inFlight.delete(key),
      );
      this.inFlight.set(key, (pending = entry));
    }
    pending.waiters++;
    try {
      const issued = await pending.issued;
      const record = this.active(secret, consumer)!;
      return { value: copySecretBytes(issued.value), fingerprint: this.fingerprintOf(record) };
    } finally {
      if (--pending.waiters === 0 && this.inFlight.get(key) === pending) {
        this.inFlight.delete(key);
        void pending.issued.then((issued) => wipeSecretBytes(issued.value), () => {});
      }
    }
  }

  /** A container was removed: its leases are revoked after their grace period (not shared ones). */
  consumerRemoved(container: string): void {
    let changed = false;
    for (const record of this.records) {
      if (record.consumer !== container || record.state !== "active") continue;
      const spec = this.options.spec(record.secret);
      this.retire(record, spec?.lease.revokeOnRemove === false ? undefined : (spec?.lease.revokeGraceMs ?? 0), "consumer removed");
      changed = true;
    }
    if (changed) this.changed();
  }

  /**
   * Consumers that are gone (removed while the agent was down, or a `destroy` event missed) are
   * released: `live` is every container Docker listed at `listedAtMs`, running or not; a lease
   * issued after that list is not judged by it.
   */
  retainConsumers(live: ReadonlySet<string>, listedAtMs: number): void {
    const gone = this.records.filter((r) => r.consumer !== SHARED_CONSUMER && r.state === "active" && r.issuedAtMs < listedAtMs && !live.has(r.consumer));
    for (const consumer of new Set(gone.map((r) => r.consumer))) this.consumerRemoved(consumer);
  }

  views(): LeaseView[] {
    return this.records.map((r) => ({
      secret: r.secret,
      consumer: r.consumer,
      state: r.state,
      expiresAt: new Date(r.expiresAtMs).toISOString(),
      ...(r.lastRenewalAtMs === undefined ? {} : { lastRenewalAt: new Date(r.lastRenewalAtMs).toISOString() }),
      replaceWanted: r.replaceWanted === true,
      failures: r.failures,
    }));
  }

  /** Active leases and the seconds until the soonest expiry (metrics). */
  summary(): { active: number; secondsToExpiry: number | undefined } {
    const active = this.records.filter((r) => r.state === "active");
    const soonest = Math.min(...active.map((r) => r.expiresAtMs));
    return { active: active.length, secondsToExpiry: active.length ? Math.max(0, (soonest - this.now()) / 1000) : undefined };
  }

  /** Does everything due now; returns when the next thing is due (ms since the epoch), if anything. */
  async tick(): Promise<number | undefined> {
    const now = this.now();
    const replace = new Set<string>();
    // Calls to Vault for different leases run side by side, a bounded number at a time.
    await mapLimit([...this.records], PARALLEL_CALLS, async (record) => {
      const spec = this.options.spec(record.secret);
      if (record.lookupWanted && spec) await this.lookup(record, spec);
      if (!spec && record.state === "active") this.retire(record, 0, "secret removed");
      const action = plan(record, spec?.lease ?? { renewAt: 2 / 3, reissueMargin: 0.15 });
      if (action.atMs > now) return;
      if (action.kind === "revoke") await this.revoke(record);
      else if (action.kind === "renew") await this.renew(record, spec!);
      else if (this.wantReplacement(record)) replace.add(record.secret);
    });
    if (replace.size) this.options.onReplaceWanted([...replace]);
    return this.nextDue();
  }

  /** Runs `tick` on a timer until `stop`. */
  run(): void {
    this.running = true;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.ticking;
    await this.saving;
    for (const value of this.sharedValues.values()) wipeSecretBytes(value);
    this.sharedValues.clear();
    await this.options.book.save(this.records);
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ticking = this.tick()
        .then(
          (next) => next,
          () => this.now() + 1_000,
        )
        .then((next) => {
          this.ticking = undefined;
          this.schedule(next === undefined ? 60_000 : Math.max(50, next - this.now()));
        });
    }, delayMs);
    this.timer.unref?.();
  }

  private nextDue(): number | undefined {
    const times = this.records.map((r) => plan(r, this.options.spec(r.secret)?.lease ?? { renewAt: 2 / 3, reissueMargin: 0.15 }).atMs);
    return times.length ? Math.min(...times) : undefined;
  }

  private active(secret: string, consumer: string): LeaseRecord | undefined {
    return this.records.find((r) => r.secret === secret && r.consumer === consumer && r.state === "active");
  }

  private fingerprintOf(record: LeaseRecord): string {
    return `lease:${this.options.fingerprint(record.leaseId ?? record.serial ?? `${record.secret}@${record.issuedAtMs}`)}`;
  }

  private signal(outer?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(this.options.callTimeoutMs ?? CALL_TIMEOUT_MS);
    return outer ? AbortSignal.any([outer, timeout]) : timeout;
  }

  private async issue(spec: SecretSpec & { lease: LeaseSpec }, consumer: string, signal?: AbortSignal): Promise<IssuedCredential> {
    const backend = this.options.backend(spec.provider);
    const before = this.active(spec.name, consumer);
    try {
      if (!backend) throw new Error(`provider ${spec.provider} is not running`);
      const issued = await backend.issue(spec, this.signal(signal));
      const now = this.now();
      const record: LeaseRecord = {
        secret: spec.name,
        consumer,
        engine: spec.lease.engine,
        ...(issued.lease.leaseId ? { leaseId: issued.lease.leaseId } : {}),
        ...(issued.lease.serial ? { serial: issued.lease.serial } : {}),
        renewable: issued.lease.renewable,
        issuedAtMs: now,
        grantedAtMs: now,
        expiresAtMs: issued.lease.expiresAtMs,
        durationMs: Math.max(1, issued.lease.expiresAtMs - now),
        state: "active",
        failures: 0,
      };
      // The old credential stays valid through the grace period: the container switches to the new one first.
      if (before) this.retire(before, spec.lease.revokeGraceMs, "replaced");
      this.records.push(record);
      if (consumer === SHARED_CONSUMER) {
        wipeSecretBytes(this.sharedValues.get(spec.name));
        this.sharedValues.set(spec.name, copySecretBytes(issued.value));
      }
      this.changed();
      this.tell((e) => e.issued(record, before !== undefined));
      return issued;
    } catch (error) {
      this.tell((e) => e.failed(before ?? { secret: spec.name, consumer }, before ? "replace" : "issue", error));
      if (before) this.noteFailure(before, "replace", error);
      throw error;
    }
  }

  private async renew(record: LeaseRecord, spec: SecretSpec & { lease: LeaseSpec }): Promise<void> {
    const backend = this.options.backend(spec.provider);
    const asked = Math.max(1, Math.round(record.durationMs / 1000));
    try {
      if (!backend || !record.leaseId) throw new Error(`provider ${spec.provider} is not running`);
      const renewed = await backend.renew(record, asked, this.signal());
      const now = this.now();
      record.lastRenewalAtMs = now;
      record.grantedAtMs = now;
      record.expiresAtMs = renewed.expiresAtMs;
      record.failures = 0;
      record.retryAtMs = undefined;
      record.alarmed = false;
      // Capped at max_ttl: renewing again only shrinks it; a replacement comes before the re-issue margin.
      if (renewed.capped) record.renewable = false;
      else record.durationMs = Math.max(1, renewed.expiresAtMs - now);
      this.changed();
      this.tell((e) => e.renewed(record));
    } catch (error) {
      this.tell((e) => e.failed(record, "renew", error));
      this.noteFailure(record, "renew", error);
    }
  }

  private async lookup(record: LeaseRecord, spec: SecretSpec & { lease: LeaseSpec }): Promise<void> {
    const backend = this.options.backend(spec.provider);
    if (!backend?.lookup) return void (record.lookupWanted = false);
    try {
      const found = await backend.lookup(record, this.signal());
      record.lookupWanted = false;
      if (found.valid) record.expiresAtMs = found.expiresAtMs;
      else {
        // Gone at Vault: the consumer's credential no longer works; a replacement is due now (plan).
        record.expiresAtMs = Math.min(record.expiresAtMs, this.now());
        record.renewable = false;
      }
      this.changed();
    } catch {
      // Vault unreachable: keep the records' own times; renewal will tell.
      record.lookupWanted = false;
    }
  }

  /** Marks the credential for replacement; true when it is to be announced (now, or again after backoff). */
  private wantReplacement(record: LeaseRecord): boolean {
    const first = !record.replaceWanted;
    record.replaceWanted = true;
    if (!first) {
      // Announced and still not delivered (the delivery failed, or none came): announce again, with backoff.
      this.noteFailure(record, "replace", new Error("the replacement has not been delivered yet"));
    }
    this.changed();
    return true;
  }

  private async revoke(record: LeaseRecord): Promise<void> {
    const reason = record.retiredBecause ?? "replaced";
    const spec = this.options.spec(record.secret);
    const backend = spec ? this.options.backend(spec.provider) : undefined;
    try {
      if (record.expiresAtMs > this.now()) {
        if (!backend) throw new Error(`provider for "${record.secret}" is not running`);
        await backend.revoke(record, this.signal());
      }
      this.records = this.records.filter((r) => r !== record);
      this.changed();
      this.tell((e) => e.revoked(record, reason));
    } catch (error) {
      this.tell((e) => e.failed(record, "revoke", error));
      this.noteFailure(record, "revoke", error);
    }
  }

  private retire(record: LeaseRecord, graceMs: number | undefined, because: NonNullable<LeaseRecord["retiredBecause"]>): void {
    if (record.consumer === SHARED_CONSUMER && because !== "replaced") {
      wipeSecretBytes(this.sharedValues.get(record.secret));
      this.sharedValues.delete(record.secret);
    }
    record.state = "retiring";
    record.retiredBecause = because;
    record.replaceWanted = false;
    record.failures = 0;
    record.retryAtMs = undefined;
    // revoke_on_remove: false: left to expire at its TTL (revocation is skipped once expired).
    record.revokeAtMs = graceMs === undefined ? record.expiresAtMs : this.now() + graceMs;
  }

  private noteFailure(record: LeaseRecord, operation: LeaseOperation, error: unknown): void {
    record.failures++;
    record.retryAtMs = this.now() + retryDelay(record.failures);
    if (!record.alarmed && record.state === "active") {
      record.alarmed = true;
      const secondsLeft = Math.max(0, (record.expiresAtMs - this.now()) / 1000);
      this.tell((e) => e.alarm(record, operation, error, secondsLeft));
    }
    this.changed();
  }

  private changed(): void {
    this.persist();
    if (this.running && !this.ticking) this.schedule(0);
  }

  /** Saves the records, coalescing changes that come while a save is under way. */
  private persist(): void {
    this.dirty = true;
    this.saving ??= (async () => {
      while (this.dirty) {
        this.dirty = false;
        await this.options.book.save(this.records);
      }
    })().finally(() => {
      this.saving = undefined;
    });
  }

  private tell(report: (events: LeaseEvents) => void): void {
    try {
      report({ ...NO_EVENTS, ...this.options.events });
    } catch {
      // observing never breaks the keeper
    }
  }
}
