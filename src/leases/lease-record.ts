/**
 * What the lease keeper knows of one issued credential: metadata only (lease id, serial, consumer,
 * times), never its value. `plan` is the pure decision of what is due for a record and when:
 * renewal at the renewal point, a replacement before expiry when renewal cannot extend it, the
 * revocation of a retired lease after its grace period, the next try after a failure.
 */
import type { LeaseSpec } from "../config/lease-spec.ts";

/** The consumer of a `scope: shared` lease: all of them. */
export const SHARED_CONSUMER = "shared";

export interface LeaseRecord {
  secret: string;
  /** A container id, or SHARED_CONSUMER. */
  consumer: string;
  engine: string;
  leaseId?: string;
  serial?: string;
  renewable: boolean;
  issuedAtMs: number;
  expiresAtMs: number;
  /** The lease's length as last granted (issue or renewal), the base of the renewal point. */
  durationMs: number;
  /** When the last grant began (issue or the last renewal). */
  grantedAtMs: number;
  lastRenewalAtMs?: number;
  /** "active": the consumer's credential; "retiring": replaced or its consumer removed, revoked at `revokeAtMs`. */
  state: "active" | "retiring";
  revokeAtMs?: number;
  retiredBecause?: "replaced" | "consumer removed" | "secret removed";
  /** Renewal cannot extend it (capped at max_ttl, refused, not renewable): a new credential is wanted. */
  replaceWanted?: boolean;
  /** Failed attempts in a row (renew, revoke); the next one waits until `retryAtMs`. */
  failures: number;
  retryAtMs?: number;
  /** Loaded from the book: ask Vault whether the lease still exists before trusting it. */
  lookupWanted?: boolean;
  /** The alarm (metric, audit, notification) was raised for the current trouble. */
  alarmed?: boolean;
}

export type LeaseAction = { kind: "renew" | "replace" | "revoke"; atMs: number };

export const RETRY_BASE_MS = 1_000;
export const RETRY_MAX_MS = 30_000;

export function retryDelay(failures: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, failures - 1));
}

/** The one thing due next for `record` and when (it may be now or past). */
export function plan(record: LeaseRecord, spec: Pick<LeaseSpec, "renewAt" | "reissueMargin">): LeaseAction {
  const notBefore = record.retryAtMs ?? 0;
  if (record.state === "retiring") return { kind: "revoke", atMs: Math.max(record.revokeAtMs ?? 0, notBefore) };
  const replaceAt = record.expiresAtMs - spec.reissueMargin * record.durationMs;
  if (record.replaceWanted || !record.renewable) return { kind: "replace", atMs: Math.max(record.replaceWanted ? 0 : replaceAt, notBefore) };
  const renewAt = record.grantedAtMs + spec.renewAt * record.durationMs;
  return { kind: "renew", atMs: Math.max(Math.min(renewAt, replaceAt), notBefore) };
}
