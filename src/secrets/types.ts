/** The shapes of secret values as the agent holds them during one injection window. */
import type { SecretRef } from "../rpc/protocol.ts";
import type { FetchedItem, SecretBytes } from "../rpc/wire-values.ts";

export interface FetchedSecret {
  /** Bytes the window's owner wipes when it ends (FetchBatch.release, releaseFetch). */
  value: SecretBytes;
  fingerprint: string;
  version?: string;
}

/** A provider process as the value side sees it (the supervisor implements it). */
export interface SecretFetcher {
  fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchedItem[]>;
}

/**
 * Dynamic (leased) secrets are issued per consumer (src/leases/lease-keeper.ts implements this):
 * what a container should have, and its credential for a delivery.
 */
export interface DynamicCredentials {
  isDynamic(name: string): boolean;
  /** The container itself, or one key for all containers of a shared lease. */
  consumerOf(name: string, container: string): string;
  fingerprintFor(name: string, container: string): string;
  credential(name: string, container: string, signal?: AbortSignal): Promise<FetchedSecret>;
}

/** Values of one fetch, by secret name, and one line per secret that could not be fetched. */
export interface FetchResult {
  values: Map<string, FetchedSecret>;
  errors: string[];
  /** Per secret that could not be fetched: the provider's error code and its message. */
  failed: Map<string, { code: string; message: string }>;
}
