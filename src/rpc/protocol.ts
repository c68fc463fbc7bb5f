/**
 * The agent ⇄ provider protocol. Both ends import this module and nothing else of each other.
 *
 * Transport: the child's stdin (requests) and stdout (hello + responses), as frames (framing.ts):
 * an 8-byte header (JSON length, raw length), a JSON object of at most MAX_FRAME_BYTES that never
 * holds a value, then a raw section of at most MAX_RAW_BYTES. Secret values cross the pipe only in
 * the raw section of `fetch` results, back to back in the order the JSON's `value.keys` list them,
 * so the agent reads them into a buffer it owns and wipes, never into a JS string. stderr is the
 * child's log channel: JSON log lines that the agent re-logs under the provider's name. See
 * docs/provider-protocol.md.
 */
import * as v from "valibot";

export const PROTOCOL_VERSION = 2;
/** A fetch of 20 secrets of 64 KiB (AWS's maximum) each fits with room to spare. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;
/** The values of one fetch result: a 10 MB secret fits, a flood does not. */
export const MAX_RAW_BYTES = 64 * 1024 * 1024;
export const MAX_REFS_PER_CALL = 5_000;
/** A secret name, version or stage; longer is refused at every edge that takes one (labels, dso.yaml). */
export const MAX_NAME_LENGTH = 2048;
/**
 * The refs of one fingerprint or fetch request as JSON, at most: a quarter of the frame, so the
 * reply (each item echoes its ref, plus a fingerprint of at most 512 characters or an error) fits
 * too in every ordinary case. Callers split longer lists (watcher/provider-poller.ts).
 */
export const MAX_REFS_REQUEST_BYTES = MAX_FRAME_BYTES / 4;

const Name = v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_NAME_LENGTH));

export const ErrorCodeSchema = v.picklist([
  "PROVIDER_AUTH",
  "PROVIDER_THROTTLED",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_TIMEOUT",
  "SECRET_NOT_FOUND",
  "CONFIG_INVALID",
  "RPC_PROTOCOL",
  "INTERNAL",
]);
export type RpcErrorCode = v.InferOutput<typeof ErrorCodeSchema>;

export const RpcErrorSchema = v.strictObject({
  code: ErrorCodeSchema,
  message: v.pipe(v.string(), v.maxLength(2000)),
  /** Milliseconds the caller should wait before retrying (throttling). */
  retryAfterMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
});
export type RpcError = v.InferOutput<typeof RpcErrorSchema>;

/** One secret at the provider: its id, optionally pinned to a version or stage. */
export const SecretRefSchema = v.strictObject({
  name: Name,
  version: v.optional(Name),
  stage: v.optional(Name),
});
export type SecretRef = v.InferOutput<typeof SecretRefSchema>;

/**
 * Consecutive runs of `items` whose refs fit one fingerprint or fetch request: at most
 * MAX_REFS_PER_CALL refs and MAX_REFS_REQUEST_BYTES of refs as JSON each (a single larger ref goes
 * alone, and the provider refuses it alone).
 */
export function requestChunks<T>(items: readonly T[], refOf: (item: T) => SecretRef, maxCount = MAX_REFS_PER_CALL, maxBytes = MAX_REFS_REQUEST_BYTES): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(JSON.stringify(refOf(item))) + 1;
    if (current.length > 0 && (current.length >= maxCount || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length) chunks.push(current);
  return chunks;
}

export function refKey(ref: SecretRef): string {
  return `${ref.name}@${ref.version ?? ""}#${ref.stage ?? ""}`;
}

// ---- agent → provider ----

export const ConfigureParamsSchema = v.strictObject({
  /** The instance name from dso.yaml (`providers.<name>`), for messages. */
  name: Name,
  type: Name,
  region: v.optional(v.string()),
  auth: v.optional(
    v.strictObject({
      method: v.optional(v.string()),
      params: v.optional(v.record(v.string(), v.string())),
    }),
  ),
  config: v.record(v.string(), v.string()),
  /** Credentials the agent holds (from its own environment), never passed through env or argv. */
  credentials: v.optional(v.record(v.string(), v.string())),
  /**
   * The key of fingerprints a provider computes from values (HMAC-SHA-256): 32 bytes as 64 lowercase
   * hex characters, per host and per provider instance. Never logged; a provider that hashes values
   * refuses to configure without it.
   */
  fingerprintKey: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters"))),
  /** `providers.<name>.events`: the queue of change events this provider reads (`events` calls). */
  events: v.optional(v.strictObject({ queue: v.pipe(v.string(), v.minLength(1), v.maxLength(2048)) })),
  /**
   * A fetch process's borrowed session: what the long-lived process's `session` call returned
   * (Vault: its token), used instead of logging in again, never renewed or revoked by the
   * borrower. Crosses only the RPC pipes, never env, argv or disk.
   */
  session: v.optional(v.record(v.string(), v.pipe(v.string(), v.minLength(1), v.maxLength(8192)))),
});
export type ConfigureParams = v.InferOutput<typeof ConfigureParamsSchema>;

const RefsParams = v.strictObject({ refs: v.pipe(v.array(SecretRefSchema), v.maxLength(MAX_REFS_PER_CALL)) });

const RequestId = v.pipe(v.number(), v.integer(), v.minValue(1));

/** The longest an `events` call waits for a message (SQS's own maximum), well inside the call timeout. */
export const MAX_EVENT_WAIT_SECONDS = 20;
/** Messages per `events` call (SQS's maximum per ReceiveMessage; Azure's is 32). */
export const MAX_EVENT_MESSAGES = 10;
/** Secrets one event message may name; more is a poison message. */
export const MAX_SECRETS_PER_EVENT = 100;
const Receipt = v.pipe(v.string(), v.minLength(1), v.maxLength(8192));

/**
 * One message of the change-event queue as the provider read it: only the names of secrets it
 * says changed (never a value), or why it is unusable (`problem`: malformed, too large, not a
 * secret change). `receipt` deletes it (`events_done`) once the agent has handled it.
 */
export const EventMessageSchema = v.strictObject({
  receipt: Receipt,
  secrets: v.pipe(v.array(Name), v.maxLength(MAX_SECRETS_PER_EVENT)),
  problem: v.optional(v.picklist(["malformed", "too_large", "not_a_secret_change"])),
  /** When the cloud queued it (ms since the epoch), for the age shown by `dso doctor` and metrics. */
  sentAt: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
});
export type EventMessage = v.InferOutput<typeof EventMessageSchema>;

/** A dynamic (leased) credential to issue: `<engine>/creds/<role>` or `<engine>/issue/<role>` with params. */
export const IssueParamsSchema = v.strictObject({
  ref: SecretRefSchema,
  engine: Name,
  kind: v.picklist(["creds", "issue"]),
  role: Name,
  params: v.record(v.string(), v.pipe(v.string(), v.maxLength(MAX_NAME_LENGTH))),
});
export type IssueParams = v.InferOutput<typeof IssueParamsSchema>;

/** Lease metadata: never a value. */
export const LeaseInfoSchema = v.strictObject({
  leaseId: v.optional(Name),
  serial: v.optional(Name),
  renewable: v.boolean(),
  expiresAtMs: v.pipe(v.number(), v.integer(), v.minValue(0)),
});
export type LeaseInfo = v.InferOutput<typeof LeaseInfoSchema>;

/** Calls on a lease or on the token leases belong to (the long-lived provider process answers them). */
export const LeaseParamsSchema = v.variant("op", [
  v.strictObject({ op: v.literal("renew"), leaseId: Name, incrementSeconds: v.pipe(v.number(), v.integer(), v.minValue(1)) }),
  v.strictObject({ op: v.literal("revoke"), engine: Name, leaseId: v.optional(Name), serial: v.optional(Name) }),
  v.strictObject({ op: v.literal("lookup"), leaseId: Name }),
  v.strictObject({ op: v.literal("token") }),
]);
export type LeaseParams = v.InferOutput<typeof LeaseParamsSchema>;

export const LeaseResultSchema = v.strictObject({
  expiresAtMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  capped: v.optional(v.boolean()),
  /** op lookup: false when Vault no longer knows the lease (revoked, expired). */
  valid: v.optional(v.boolean()),
  /** op token: what `dso doctor` checks (periodic or orphan, TTL). */
  token: v.optional(v.strictObject({ ttlSeconds: v.number(), renewable: v.boolean(), orphan: v.boolean(), periodSeconds: v.optional(v.number()) })),
});
export type LeaseResult = v.InferOutput<typeof LeaseResultSchema>;

export const RequestSchema = v.variant("method", [
  v.strictObject({ id: RequestId, method: v.literal("configure"), params: ConfigureParamsSchema }),
  v.strictObject({ id: RequestId, method: v.literal("fingerprint"), params: RefsParams }),
  v.strictObject({ id: RequestId, method: v.literal("fetch"), params: RefsParams }),
  v.strictObject({ id: RequestId, method: v.literal("health"), params: v.optional(v.strictObject({})) }),
  v.strictObject({
    id: RequestId,
    method: v.literal("events"),
    params: v.strictObject({ waitSeconds: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_EVENT_WAIT_SECONDS)) }),
  }),
  v.strictObject({ id: RequestId, method: v.literal("events_done"), params: v.strictObject({ receipts: v.pipe(v.array(Receipt), v.maxLength(MAX_EVENT_MESSAGES)) }) }),
  v.strictObject({ id: RequestId, method: v.literal("events_status"), params: v.optional(v.strictObject({})) }),

  v.strictObject({ id: RequestId, method: v.literal("issue"), params: IssueParamsSchema }),
  v.strictObject({ id: RequestId, method: v.literal("lease"), params: LeaseParamsSchema }),
  v.strictObject({ id: RequestId, method: v.literal("session"), params: v.optional(v.strictObject({})) }),
  v.strictObject({ id: RequestId, method: v.literal("shutdown"), params: v.optional(v.strictObject({})) }),
]);
export type Request = v.InferOutput<typeof RequestSchema>;
export type Method = Request["method"];

// ---- provider → agent ----

export const HelloSchema = v.strictObject({
  type: v.literal("hello"),
  protocol: v.pipe(v.number(), v.integer()),
  provider: Name,
});
export type Hello = v.InferOutput<typeof HelloSchema>;

export const FingerprintItemSchema = v.strictObject({
  ref: SecretRefSchema,
  /** Changes whenever the value changes: a version id, a change date, or a hash made in the provider. */
  fingerprint: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(512))),
  error: v.optional(RpcErrorSchema),
});
export type FingerprintItem = v.InferOutput<typeof FingerprintItemSchema>;

/**
 * A value as a provider implementation returns it (inside the provider process): key inside the
 * secret → content; a secret that is not a JSON object has the single key `value`. The provider
 * host turns it into bytes for the raw section; it never crosses the pipe in this form.
 */
export interface SecretValue {
  data: Record<string, string | Uint8Array>;
  /** How string contents are encoded: base64 for binary secrets (decoded by the host). */
  encoding: "utf8" | "base64";
}

/** A fetch result item as a provider implementation returns it. */
export interface FetchItem {
  ref: SecretRef;
  fingerprint?: string;
  /** The provider's version id, shown to users (never the value). */
  version?: string;
  value?: SecretValue;
  error?: RpcError;
}

/** On the wire: the keys of a value and the length of each one's bytes in the raw section. */
export const WireValueSchema = v.strictObject({
  keys: v.pipe(
    v.array(v.strictObject({ key: v.pipe(v.string(), v.maxLength(2048)), bytes: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_RAW_BYTES)) })),
    v.maxLength(10_000),
  ),
});
export type WireValue = v.InferOutput<typeof WireValueSchema>;

export const WireFetchItemSchema = v.strictObject({
  ref: SecretRefSchema,
  fingerprint: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(512))),
  version: v.optional(v.pipe(v.string(), v.maxLength(512))),
  value: v.optional(WireValueSchema),
  error: v.optional(RpcErrorSchema),
});
export type WireFetchItem = v.InferOutput<typeof WireFetchItemSchema>;

export const HealthResultSchema = v.strictObject({
  ok: v.boolean(),
  message: v.optional(v.string()),
});
export type HealthResult = v.InferOutput<typeof HealthResultSchema>;

export const ResultSchemas = {
  configure: v.strictObject({ ok: v.literal(true) }),
  fingerprint: v.strictObject({ items: v.array(FingerprintItemSchema) }),
  fetch: v.strictObject({ items: v.array(WireFetchItemSchema) }),
  health: HealthResultSchema,
  events: v.strictObject({ messages: v.pipe(v.array(EventMessageSchema), v.maxLength(MAX_EVENT_MESSAGES)) }),
  events_done: v.strictObject({}),
  /** The queue answered: messages waiting (where the service counts them: not Pub/Sub) and the age of the oldest one where the service tells it. */
  events_status: v.strictObject({ waiting: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))), oldestAgeSeconds: v.optional(v.pipe(v.number(), v.minValue(0))) }),
  shutdown: v.strictObject({}),
  /** Its value in the raw section, as one fetch item's. */
  issue: v.strictObject({ item: WireFetchItemSchema, lease: LeaseInfoSchema }),
  lease: LeaseResultSchema,
  /** The long-lived process's authenticated session, lent to fetch processes (configure `session`). */
  session: v.strictObject({ session: v.record(v.string(), v.pipe(v.string(), v.minLength(1), v.maxLength(8192))) }),
} as const;

/** The methods whose results carry values in the frame's raw section. */
export const VALUE_METHODS: ReadonlySet<string> = new Set(["fetch", "issue"]);

export type ResultOf<M extends Method> = v.InferOutput<(typeof ResultSchemas)[M]>;
export type ParamsOf<M extends Method> = Extract<Request, { method: M }>["params"];

/** A response: its result is checked against ResultSchemas[method] by the caller who knows the method. */
export const ResponseSchema = v.union([
  v.strictObject({ id: RequestId, result: v.unknown() }),
  v.strictObject({ id: v.union([RequestId, v.null()]), error: RpcErrorSchema }),
]);
export type Response = v.InferOutput<typeof ResponseSchema>;

export { describeIssues } from "../util/issues.ts";

/** The caps every reader of provider frames applies. */
export const FRAME_LIMITS = { maxJsonBytes: MAX_FRAME_BYTES, maxRawBytes: MAX_RAW_BYTES } as const;
