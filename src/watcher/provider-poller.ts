/**
 * The provider stream of the Watcher: asks each provider for fingerprints (never values) every
 * polling interval, with jitter, and reports which secrets changed. The first poll only seeds.
 * The refs go in requests within the protocol's limits (count and bytes), so no secret, however
 * it was named, can make the call of every other secret of its provider fail; a ref the protocol
 * would refuse is never sent and is that secret's error alone.
 */
import * as v from "valibot";
import { refFor, type SecretState, type SecretStore } from "../secrets/store.ts";
import { describeError } from "../errors.ts";
import { MAX_NAME_LENGTH, requestChunks, SecretRefSchema, type FingerprintItem, type SecretRef } from "../rpc/protocol.ts";

export interface FingerprintSource {
  fingerprint(refs: SecretRef[], signal?: AbortSignal): Promise<FingerprintItem[]>;
}

export interface PollOutcome {
  provider: string;
  changed: string[];
  seeded: string[];
  /** Known fingerprint again after the secret was stale: containers may have missed a delivery. */
  recovered: string[];
  errors: Array<{ secret: string; message: string }>;
  /** The provider could not be asked at all (not one secret answered). */
  failed: boolean;
}

/** ±10 % so many agents (or providers) do not poll in lockstep. */
export const POLL_JITTER = 0.1;

/**
 * When to poll next after `failedInARow` failed polls (`providers.*.retry`): a failed poll is
 * tried `attempts` times in all, `backoffMs` apart and doubling, then the interval applies.
 */
export function nextPollDelay(failedInARow: number, retry: { attempts: number; backoffMs: number }, intervalMs: number): number {
  if (failedInARow === 0 || failedInARow >= retry.attempts) return intervalMs;
  return Math.min(intervalMs, retry.backoffMs * 2 ** (failedInARow - 1));
}

export function jittered(intervalMs: number, random = Math.random): number {
  return Math.round(intervalMs * (1 - POLL_JITTER + 2 * POLL_JITTER * random()));
}

export async function pollProvider(
  provider: string,
  source: FingerprintSource,
  store: SecretStore,
  signal?: AbortSignal,
  /** Only these secrets (a change event named them); all of the provider's otherwise. */
  only?: ReadonlySet<string>,
): Promise<PollOutcome> {
  const outcome: PollOutcome = { provider, changed: [], seeded: [], recovered: [], errors: [], failed: false };
  const now = new Date();
  const fail = (name: string, message: string) => {
    store.recordError(name, message, now);
    outcome.errors.push({ secret: name, message });
  };
  const sendable: SecretState[] = [];
  for (const state of store.forProvider(provider)) {
    if (only && !only.has(state.spec.name)) continue;
    // A dynamic secret has nothing to poll: the lease keeper (src/leases/) announces its replacements.
    if (state.spec.lease) continue;
    if (v.is(SecretRefSchema, refFor(state.spec))) sendable.push(state);
    else fail(state.spec.name, `not asked for: a secret name, version or stage must be 1 to ${MAX_NAME_LENGTH} characters`);
  }
  if (sendable.length === 0) return outcome;
  let answered = 0;
  for (const chunk of requestChunks(sendable, (s) => refFor(s.spec))) {
    let items: FingerprintItem[];
    try {
      items = await source.fingerprint(
        chunk.map((s) => refFor(s.spec)),
        signal,
      );
      answered++;
    } catch (error) {
      const message = describeError(error);
      for (const s of chunk) fail(s.spec.name, message);
      continue;
    }
    recordItems(chunk, items, store, outcome, now);
  }
  outcome.failed = answered === 0;
  return outcome;
}

function recordItems(states: SecretState[], items: FingerprintItem[], store: SecretStore, outcome: PollOutcome, now: Date): void {
  states.forEach((state, i) => {
    const item = items[i];
    const name = state.spec.name;
    if (!item?.fingerprint) {
      const message = item?.error?.message ?? "provider returned no fingerprint";
      store.recordError(name, message, now);
      outcome.errors.push({ secret: name, message });
      return;
    }
    const result = store.recordFingerprint(name, item.fingerprint, now);
    if (result === "changed") outcome.changed.push(name);
    if (result === "seeded") outcome.seeded.push(name);
    if (result === "recovered") outcome.recovered.push(name);
  });
}
