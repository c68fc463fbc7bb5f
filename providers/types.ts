/**
 * What every provider implements. A provider is a factory (validate config, create a client)
 * and a client (fingerprint, fetch, health, close). The provider returns contents; the agent
 * writes files. Copy providers/file/ for a working skeleton.
 */
import type {
  ConfigureParams,
  FetchItem,
  FingerprintItem,
  HealthResult,
  SecretRef,
} from "../src/rpc/protocol.ts";
import type { FieldLogger } from "../src/log/logger.ts";

export type { ConfigureParams, FetchItem, FingerprintItem, HealthResult, SecretRef };

export type ProviderLogger = FieldLogger;

export interface ProviderContext {
  log: ProviderLogger;
  /** The process environment the provider may read (already filtered by the agent). */
  env: Record<string, string | undefined>;
}

export interface ProviderClient {
  /**
   * One item per ref, in order. Use metadata (version ids, change dates) where the service has
   * it; where it has none, fetch and hash inside the provider so only the hash leaves.
   */
  fingerprint(refs: SecretRef[], signal: AbortSignal): Promise<FingerprintItem[]>;
  /** One item per ref, in order, with the value or an error. */
  fetch(refs: SecretRef[], signal: AbortSignal): Promise<FetchItem[]>;
  health(signal: AbortSignal): Promise<HealthResult>;
  close(): Promise<void>;
}

export interface ProviderFactory {
  type: string;
  /** Validate the configuration (throw ProviderError CONFIG_INVALID naming the field) and connect lazily. */
  create(params: ConfigureParams, ctx: ProviderContext): Promise<ProviderClient>;
}
