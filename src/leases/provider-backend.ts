/**
 * The lease keeper's backend over a provider process: issue through its short-lived fetch child
 * (the call that carries a value), renew and revoke through its long-lived child (metadata). Both
 * use the token the provider was configured with, so every lease belongs to the agent's token,
 * which must outlive them (periodic or orphan; `dso doctor` checks it).
 */
import type { IssueParams, LeaseInfo, LeaseParams, LeaseResult } from "../rpc/protocol.ts";
import type { FetchedItem } from "../rpc/wire-values.ts";
import type { LeaseBackend } from "./lease-keeper.ts";

/** What the backend needs of a ProviderProcess (src/rpc/provider-process.ts). */
export interface LeaseCapableProvider {
  issue(params: IssueParams, signal?: AbortSignal): Promise<{ item: FetchedItem; lease: LeaseInfo }>;
  lease(params: LeaseParams, signal?: AbortSignal): Promise<LeaseResult>;
}

export function providerLeaseBackend(provider: LeaseCapableProvider): LeaseBackend {
  return {
    async issue(spec, signal) {
      const { engine, kind, role, params } = spec.lease;
      const { item, lease } = await provider.issue({ ref: { name: spec.name }, engine, kind, role, params }, signal);
      return { value: item.value ?? new Map(), lease };
    },
    async renew(record, incrementSeconds, signal) {
      const result = await provider.lease({ op: "renew", leaseId: record.leaseId!, incrementSeconds }, signal);
      return { expiresAtMs: result.expiresAtMs ?? record.expiresAtMs, capped: result.capped === true };
    },
    async lookup(record, signal) {
      const result = await provider.lease({ op: "lookup", leaseId: record.leaseId! }, signal);
      return { valid: result.valid !== false, expiresAtMs: result.expiresAtMs ?? record.expiresAtMs };
    },
    async revoke(record, signal) {
      await provider.lease({ op: "revoke", engine: record.engine, ...(record.leaseId ? { leaseId: record.leaseId } : {}), ...(record.serial ? { serial: record.serial } : {}) }, signal);
    },
  };
}
