/**
 * The provider stream of the Watcher: asks each provider for fingerprints (never values) every
 * polling interval, with jitter, and reports which secrets changed. The first poll only seeds.
 */
import { refFor, type SecretStore } from "../secrets/store.ts";
import { describeError } from "../errors.ts";
import type { FingerprintItem, SecretRef } from "../rpc/protocol.ts";

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
): Promise<PollOutcome> {
  const states = store.forProvider(provider);
  const outcome: PollOutcome = { provider, changed: [], seeded: [], recovered: [], errors: [], failed: false };
  if (states.length === 0) return outcome;
  const now = new Date();
  let items: FingerprintItem[];
  try {
    items = await source.fingerprint(
      states.map((s) => refFor(s.spec)),
      signal,
    );
  } catch (error) {
    const message = describeError(error);
    for (const s of states) {
      store.recordError(s.spec.name, message, now);
      outcome.errors.push({ secret: s.spec.name, message });
    }
    outcome.failed = true;
    return outcome;
  }
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
  return outcome;
}
