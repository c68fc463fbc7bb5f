/**
 * What every provider implements. A provider is a factory (validate config, create a client)
 * and a client (fingerprint, fetch, health, close). The provider returns contents; the agent
 * writes files. Copy providers/file/ for a working skeleton.
 */
import type {
  IssueParams,
  LeaseInfo,
  LeaseParams,
  LeaseResult,
  SecretValue,
  ConfigureParams,
  EventMessage,
  FetchItem,
  FingerprintItem,
  HealthResult,
  SecretRef,
} from "../src/rpc/protocol.ts";
import type { FieldLogger } from "../src/log/logger.ts";
import type * as v from "valibot";

export type { ConfigureParams, EventMessage, FetchItem, FingerprintItem, HealthResult, SecretRef };

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
  /** Dynamic secrets (vault): a new credential with its lease; answered by a fetch process only. */
  issue?(params: IssueParams, signal: AbortSignal): Promise<{ value: SecretValue; lease: LeaseInfo }>;
  /** Renew or revoke a lease, or describe the token leases belong to: metadata only. */
  lease?(params: LeaseParams, signal: AbortSignal): Promise<LeaseResult>;
  /**
   * The session this (long-lived) process is authenticated with, to lend to fetch processes so
   * they do not log in again (descriptor `lendsSession`); they get it back in configure `session`.
   */
  session?(signal: AbortSignal): Promise<Record<string, string>>;
  close(): Promise<void>;
  /** The change-event queue (`providers.<name>.events`), when configured and the provider reads one. */
  events?: EventQueue;
}

/**
 * A queue the cloud puts change events in, read with this provider's credentials. A message is
 * only a hint naming secrets; it is deleted (`done`) only after the agent handled it.
 */
export interface EventQueue {
  /** Long-polls up to `waitSeconds`; an unusable message comes back with its `problem`, never thrown. */
  receive(waitSeconds: number, signal: AbortSignal): Promise<EventMessage[]>;
  done(receipts: string[], signal: AbortSignal): Promise<void>;
  /** `waiting` where the service counts messages (Pub/Sub does not, to a subscriber). */
  status(signal: AbortSignal): Promise<{ waiting?: number; oldestAgeSeconds?: number }>;
}

/**
 * The valibot schema of a `config` or `auth.params` block: one entry per key it takes, each
 * checking a string value (see config-values.ts). Unknown keys are reported apart, with a
 * suggestion, so this is a plain (not strict) object.
 */
export type BlockSchema = v.ObjectSchema<v.ObjectEntries, v.ErrorMessage<v.ObjectIssue> | undefined>;

/**
 * What the agent side knows of a provider type without loading it: its name, the schemas of its
 * `config` and `auth.params` (keys and values) and the auth methods it accepts (checked by `dso
 * config validate` and `dso doctor`, and again inside the provider, which parses its settings
 * with the same schemas), the environment variables its process may inherit, and those that
 * hold credentials (read by the agent and sent in `configure`, never inherited). A descriptor
 * loads no SDK: `load` imports the implementation only when a process needs it.
 */
export interface ProviderDescriptor {
  type: string;
  config: BlockSchema;
  authParams: BlockSchema;
  /** Accepted `auth.method` values; empty = the provider takes no auth block. */
  authMethods: readonly string[];
  env: readonly string[];
  credentials: readonly string[];
  /**
   * Risks in an accepted `config` block (e.g. plain http to a remote server): warnings that
   * `dso config validate` and `dso doctor` print at the key's line; a user's working file loads.
   */
  configWarnings?(config: Readonly<Record<string, string>>): Array<{ key: string; message: string }>;
  /**
   * Fetch processes borrow the long-lived process's session (its `session` call) instead of
   * authenticating again: Vault, whose leases die with the token that created them.
   */
  lendsSession?: boolean;
  load(): Promise<ProviderFactory>;
}

export interface ProviderFactory {
  type: string;
  /** Validate the configuration (throw ProviderError CONFIG_INVALID naming the field) and connect lazily. */
  create(params: ConfigureParams, ctx: ProviderContext): Promise<ProviderClient>;
}
