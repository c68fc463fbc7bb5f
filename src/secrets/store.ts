/**
 * What the agent knows about each secret: its last fingerprint and version, when it was polled
 * and changed, whether it is stale, and, only with `agent.cache: true`, its last known value
 * (in memory, never on disk). Without the cache a value lives only while it is being delivered.
 */
import type { SecretSpec } from "../config/types.ts";
import type { FetchedSecret } from "./types.ts";
import type { SecretRef } from "../rpc/protocol.ts";
import { copySecretBytes, wipeSecretBytes } from "../rpc/wire-values.ts";

/** The provider reference of a configured secret, with its pin if any. */
export function refFor(spec: SecretSpec): SecretRef {
  return { name: spec.name, ...(spec.version ? { version: spec.version } : {}), ...(spec.stage ? { stage: spec.stage } : {}) };
}

export interface SecretState {
  spec: SecretSpec;
  /** Listed in secrets[] of dso.yaml (not only named by a label or a volume). */
  configured: boolean;
  fingerprint?: string;
  version?: string;
  lastPollAt?: string;
  lastChangeAt?: string;
  /** The provider could not be asked, or answered with an error, at the last poll. */
  stale: boolean;
  /** When it last turned stale (kept while it stays stale). */
  staleSince?: string;
  error?: string;
  cached?: FetchedSecret;
}

export class SecretStore {
  private readonly states = new Map<string, SecretState>();
  constructor(private readonly cacheValues: boolean) {}

  /** Replace the set of secrets (config load or reload); known fingerprints of kept secrets stay. */
  setSpecs(specs: SecretSpec[]): void {
    const next = new Map<string, SecretState>();
    for (const spec of specs) {
      const old = this.states.get(spec.name);
      next.set(spec.name, old && old.spec.provider === spec.provider ? { ...old, spec, configured: true } : { spec, configured: true, stale: false });
    }
    this.states.clear();
    for (const [k, val] of next) this.states.set(k, val);
  }

  /** Track a secret first seen on a container label (no secrets[] entry); true when it is new. */
  ensure(spec: SecretSpec): boolean {
    if (this.states.has(spec.name)) return false;
    this.states.set(spec.name, { spec, configured: false, stale: false });
    return true;
  }

  get(name: string): SecretState | undefined {
    return this.states.get(name);
  }

  all(): SecretState[] {
    return [...this.states.values()];
  }

  forProvider(provider: string): SecretState[] {
    return this.all().filter((s) => s.spec.provider === provider);
  }

  /**
   * Record a poll result: "changed" when the fingerprint differs from a known one; "recovered"
   * when it is the known one but the secret was stale (a fetch or poll failed since: containers
   * may have missed a delivery).
   */
  recordFingerprint(name: string, fingerprint: string, at: Date): "seeded" | "unchanged" | "changed" | "recovered" {
    const state = this.states.get(name);
    if (!state) return "unchanged";
    const wasStale = state.stale;
    state.lastPollAt = at.toISOString();
    state.stale = false;
    state.staleSince = undefined;
    state.error = undefined;
    const before = state.fingerprint;
    state.fingerprint = fingerprint;
    if (before === undefined) return "seeded";
    if (before === fingerprint) return wasStale ? "recovered" : "unchanged";
    state.lastChangeAt = at.toISOString();
    if (state.cached && state.cached.fingerprint !== fingerprint) {
      wipeSecretBytes(state.cached.value);
      state.cached = undefined;
    }
    return "changed";
  }

  recordError(name: string, message: string, at: Date): void {
    const state = this.states.get(name);
    if (!state) return;
    state.lastPollAt = at.toISOString();
    if (!state.stale) state.staleSince = at.toISOString();
    state.stale = true;
    state.error = message;
  }

  /**
   * Forget secrets that neither dso.yaml lists nor anything in use names (a label that was
   * removed, a volume whose Mount failed): they would be polled, and shown stale, forever.
   */
  retain(inUse: ReadonlySet<string>): string[] {
    const dropped: string[] = [];
    for (const [name, state] of this.states) {
      if (state.configured || inUse.has(name)) continue;
      wipeSecretBytes(state.cached?.value);
      this.states.delete(name);
      dropped.push(name);
    }
    return dropped;
  }

  /** Record a fetched value's fingerprint; true when it differs from a known, older one. */
  recordFetched(name: string, fetched: FetchedSecret): boolean {
    const state = this.states.get(name);
    if (!state) return false;
    const changed = state.fingerprint !== undefined && state.fingerprint !== fetched.fingerprint;
    if (state.fingerprint !== fetched.fingerprint) {
      if (changed) state.lastChangeAt = new Date().toISOString();
      state.fingerprint = fetched.fingerprint;
    }
    state.version = fetched.version ?? state.version;
    state.stale = false;
    state.staleSince = undefined;
    state.error = undefined;
    if (this.cacheValues) {
      // The cache owns its own copy: the fetch's window wipes the one it returned.
      wipeSecretBytes(state.cached?.value);
      state.cached = { ...fetched, value: copySecretBytes(fetched.value) };
    }
    return changed;
  }

  cachedValue(name: string): FetchedSecret | undefined {
    return this.cacheValues ? this.states.get(name)?.cached : undefined;
  }
}
