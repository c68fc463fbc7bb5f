/**
 * The resolved configuration the rest of DSO reads: every default applied, durations in
 * milliseconds, modes as numbers, each secret bound to its provider. Enumerations come from
 * the valibot schemas in schema.ts.
 */
import type { LeaseSpec } from "./lease-spec.ts";
import type { OutputSpec } from "../templates/types.ts";
import type { InjectType, NotificationEvent, ProviderType, SignalName, StrategyName } from "./schema.ts";

export type { InjectType, NotificationEvent, ProviderType, SignalName, StrategyName };

export interface RetrySpec {
  /** Attempts to start the provider process or repeat a failed poll. */
  attempts: number;
  /** First wait between attempts; doubles each time. */
  backoffMs: number;
}

export interface ProviderConfig {
  /** The key under `providers:` (or the legacy v1 `provider:` value). */
  name: string;
  type: ProviderType;
  region?: string;
  auth: { method?: string; params: Record<string, string> };
  /** Provider-specific settings (e.g. vault `address`, azure `vault_url`, file `path`). */
  config: Record<string, string>;
  retry: RetrySpec;
  /** `timeout`: how long one call to the provider process may take before it is killed (default 30 s). */
  timeoutMs?: number;
  /**
   * `allow_undeclared`: containers, DSO volumes and `dso inject` may ask this provider for names
   * dso.yaml does not declare. Off unless written (on for the built-in file provider).
   */
  allowUndeclared: boolean;
  /** `events`: the queue of change events read by the provider process (docs/configuration.md). */
  events?: ProviderEventsConfig;
}

export interface ProviderEventsConfig {
  /**
   * Where the provider reads change events: aws, an SQS queue URL (`events.queue`); azure, a storage
   * queue URL (https://<account>.queue.core.windows.net/<queue>); gcp, a Pub/Sub pull subscription
   * (`events.subscription`, projects/<p>/subscriptions/<s>).
   */
  queue: string;
  /** `dso doctor`: a message older than this means the consumer is behind (default 5 min). */
  maxAgeMs: number;
}

export interface FileInjectSpec {
  type: "file";
  /** Directory in the container that receives one file per mapping. */
  path: string;
  uid: number;
  gid: number;
  mode: number;
}

export interface EnvInjectSpec {
  type: "env";
}

export type InjectSpec = FileInjectSpec | EnvInjectSpec;

export interface RotationSpec {
  enabled: boolean;
  strategy: StrategyName;
  signal: SignalName;
  healthCheckTimeoutMs: number;
}

export interface TargetSpec {
  containers: string[];
  /** AND-match on container labels (the ones given at docker run, never the image's). */
  labels: Record<string, string>;
  /** DSO volumes (by name) whose `secrets=` may name this secret. */
  volumes: string[];
}

export interface SecretSpec {
  /** The secret's id at the provider, passed unchanged. */
  name: string;
  /** Key into DsoConfig.providers. */
  provider: string;
  /** A pinned version or staging label at the provider; unset = the current value. */
  version?: string;
  stage?: string;
  inject: InjectSpec;
  targets: TargetSpec;
  /** `<key inside the provider secret>: <file or variable name>`; empty = every key under its own name. */
  mappings: Record<string, string>;
  rotation: RotationSpec;
  /** `dynamic`: issued per consumer with a lease, kept by the lease keeper (src/leases/). */
  lease?: LeaseSpec;
  /** Templates and formats (docs/templates.md): when present, the secret's files (or variables) are these. */
  outputs?: OutputSpec[];
  /** Keys the version marker over the outputs' texts (templates/outputs.ts outputsDigest). */
  outputsDigest?: string;
}

export interface AgentConfig {
  /** Keep last-known-good values in memory (never on disk) to ride out provider outages. */
  cache: boolean;
  socket: string;
  /** With socketGroup: the control API (no plugin protocol) on a socket the group can reach. */
  groupSocket: string;
  socketGroup?: string;
  /** Plugin mode: the tmpfs under which each DSO volume gets its directory. */
  volumesRoot: string;
  /** Prometheus metrics: GET /metrics on the agent socket when enabled, and on `listen` (TCP) when set. */
  metrics: { enabled: boolean; listen?: string };
  /** One JSON line per delivery, rotation, strategy run, Mount/Unmount and changing API call (docs/audit.md). */
  audit: { enabled: boolean; output: "stderr" | string };
  /** Follow the output of served containers and warn when a delivered value shows up in it (docs/security.md). */
  leakSentinel: { enabled: boolean };
  watch: {
    pollingIntervalMs: number;
    /** Inbound change notifications: each one triggers an immediate fingerprint poll. */
    webhook: { enabled: boolean; listen: string; authToken?: string };
  };
  rotation: {
    /** When set, overrides the secret's strategy for containers that carry no dso.update.strategy label. */
    strategy?: StrategyName;
    signal: SignalName;
    healthCheckTimeoutMs: number;
  };
}

export interface DefaultsConfig {
  inject: { type: InjectType; path: string; uid: number; gid: number; mode: number };
  rotation: { enabled: boolean; strategy: StrategyName };
}

export interface WebhookTarget {
  url: string;
  /** The events this webhook receives (its own list, else notifications.events, else all). */
  events: NotificationEvent[];
  /** Sent with every request (e.g. Authorization); may hold credentials: never logged. */
  headers: Record<string, string>;
  /** Per attempt: the webhook's own `timeout`, else notifications.timeout, else 10 s. */
  timeoutMs: number;
  /** Retries after the first attempt; 0 = none (the Go DSO's −1). The webhook's own, else the top level's. */
  maxRetries: number;
}

/** Outbound notifications (the Go DSO's `notifications` key); docs/notifications.md. */
export interface NotificationsConfig {
  enabled: boolean;
  webhooks: WebhookTarget[];
  /** Events waiting to be sent; when full, new events are dropped (and counted), never waited for. */
  queueSize: number;
}

export interface DsoConfig {
  version: 1 | 2;
  providers: Record<string, ProviderConfig>;
  agent: AgentConfig;
  notifications: NotificationsConfig;
  defaults: DefaultsConfig;
  secrets: SecretSpec[];
}
