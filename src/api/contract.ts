/**
 * The control API: every route of the agent's socket, its request body and its reply, as valibot
 * schemas with inferred types, and the error codes with their HTTP status. The server
 * (agent/control-server.ts, agent/api-routes.ts), the client (api/client.ts, used by the CLI and doctor) and the
 * route table in docs/architecture.md follow this file; nothing in a reply is a secret value.
 */
import * as v from "valibot";
import { ERROR_CODES, type ErrorCode } from "../errors.ts";

const Name = v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(2048, "is too long"));

export const SyncBody = v.strictObject({ container: v.optional(Name) });
export const SecretBody = v.strictObject({ secret: Name });
export const InjectBody = v.strictObject({ container: Name, secrets: v.optional(v.array(Name)) });

const StrategyName = v.picklist(["restart", "signal", "rolling", "none"]);
const Delivery = v.object({ path: v.string(), mode: v.string(), files: v.array(v.string()), at: v.string() });

export const ActionReportSchema = v.object({
  container: v.string(),
  name: v.string(),
  /** Secrets whose files (or variables) were written in this pass. */
  delivered: v.array(v.string()),
  action: v.optional(v.picklist(["files-only", "signalled", "restarted", "replaced", "escalated-to-restart"])),
  error: v.optional(v.string()),
});
export type ActionReport = v.InferOutput<typeof ActionReportSchema>;

export const SecretViewSchema = v.object({
  name: v.string(),
  /** Directory in the container; for a DSO volume, its mount point. */
  path: v.string(),
  volume: v.optional(v.string()),
  mode: v.optional(v.string()),
  /** Short keyed tokens (secrets/version-marker.ts), never derived from a value alone. */
  wanted: v.optional(v.string()),
  actual: v.optional(v.string()),
  /** The provider's own version id, where it has one (metadata). */
  version: v.optional(v.string()),
  /** `current`, `pending: <why>`, `stale: <why>`. */
  state: v.string(),
  /** A dynamic secret: this consumer's lease (metadata). */
  lease: v.optional(v.object({ expiresAt: v.string(), lastRenewalAt: v.optional(v.string()) })),
  /** Templates and formats delivered with this secret, each with the secrets it reads (docs/templates.md). */
  outputs: v.optional(v.array(v.object({ name: v.string(), sources: v.array(v.string()), kind: v.string() }))),
});
export type SecretView = v.InferOutput<typeof SecretViewSchema>;

export const StrategyRunSchema = v.object({
  at: v.string(),
  strategy: StrategyName,
  action: v.optional(ActionReportSchema.entries.action.wrapped),
  outcome: v.picklist(["ok", "failed"]),
  detail: v.optional(v.string()),
});
export type StrategyRun = v.InferOutput<typeof StrategyRunSchema>;

export const ContainerViewSchema = v.object({
  id: v.string(),
  name: v.string(),
  strategy: StrategyName,
  secrets: v.array(v.string()),
  /** Per target directory: how and when files were last delivered by this agent. */
  deliveries: v.array(Delivery),
  /** secret → the provider's version id of what was delivered, where it has one. */
  versions: v.record(v.string(), v.string()),
  status: v.array(SecretViewSchema),
  lastStrategy: v.optional(StrategyRunSchema),
  observedAt: v.string(),
  error: v.optional(v.string()),
});
export type ContainerView = v.InferOutput<typeof ContainerViewSchema>;

export const InjectReportSchema = v.object({
  container: v.string(),
  name: v.string(),
  deliveries: v.array(Delivery),
  secrets: v.array(v.object({ name: v.string(), version: v.optional(v.string()), delivered: v.boolean() })),
  error: v.optional(v.string()),
});
export type InjectReport = v.InferOutput<typeof InjectReportSchema>;

export const PlanReplySchema = v.object({
  secret: v.string(),
  provider: v.string(),
  containers: v.array(
    v.object({ id: v.string(), name: v.string(), strategy: v.string(), action: v.string(), paths: v.array(v.object({ path: v.string(), mode: v.string() })) }),
  ),
  /** Outputs that read the secret (re-rendered by its change), with the secret each is delivered with. */
  outputs: v.optional(v.array(v.object({ name: v.string(), secret: v.string(), sources: v.array(v.string()), kind: v.string() }))),
});
export type PlanReply = v.InferOutput<typeof PlanReplySchema>;

export const StatusReplySchema = v.object({
  agent: v.object({
    version: v.string(),
    pid: v.number(),
    startedAt: v.string(),
    socket: v.string(),
    docker: v.optional(v.object({ host: v.string(), api: v.string(), connected: v.boolean() })),
    cache: v.boolean(),
    pollingIntervalMs: v.number(),
    /** Whether the agent process can be core-dumped (it should not: see docs/security notes). */
    hardening: v.optional(v.object({ dumpable: v.boolean(), coreDumps: v.boolean() })),
  }),
  providers: v.array(
    v.object({
      name: v.string(),
      type: v.string(),
      state: v.string(),
      healthy: v.boolean(),
      pid: v.optional(v.number()),
      /** The short-lived process serving a value fetch right now, if any. */
      fetchPid: v.optional(v.number()),
      restarts: v.number(),
      lastError: v.optional(v.string()),
      lastOkAt: v.optional(v.string()),
      lastPoll: v.optional(v.object({ at: v.string(), changed: v.number(), errors: v.number() })),
    }),
  ),
  secrets: v.array(
    v.object({
      name: v.string(),
      provider: v.string(),
      version: v.optional(v.string()),
      /** A keyed token of the fingerprint, never the fingerprint itself. */
      fingerprint: v.optional(v.string()),
      lastPollAt: v.optional(v.string()),
      lastChangeAt: v.optional(v.string()),
      stale: v.boolean(),
      state: v.string(),
      error: v.optional(v.string()),
    }),
  ),
  /** Dynamic credentials per consumer (a container id, or "shared"): metadata only. */
  leases: v.optional(
    v.array(
      v.object({
        secret: v.string(),
        consumer: v.string(),
        state: v.string(),
        expiresAt: v.string(),
        lastRenewalAt: v.optional(v.string()),
        replaceWanted: v.boolean(),
        failures: v.number(),
      }),
    ),
  ),
});
export type StatusReply = v.InferOutput<typeof StatusReplySchema>;

export const ResultsReplySchema = v.object({ results: v.array(ActionReportSchema) });
export const ContainersReplySchema = v.object({ containers: v.array(ContainerViewSchema) });

/**
 * Who may call a route (docs/security.md). `read` and `trigger` routes answer any caller the
 * socket's mode lets in (root, the agent's own uid, members of agent.socket_group); a `place`
 * route delivers a value to a target the caller chooses, so only root or the agent's own uid may
 * call it. The Docker plugin protocol (/Plugin.*, /VolumeDriver.*) is dockerd's alone (same uids).
 */
export type RouteAccess = "read" | "trigger" | "place";

/** Every route: method, path, who may call it, body schema (POST) and reply schema. */
export const ROUTES = {
  status: { method: "GET", path: "/v1/status", access: "read", reply: StatusReplySchema },
  containers: { method: "GET", path: "/v1/containers", access: "read", reply: ContainersReplySchema },
  sync: { method: "POST", path: "/v1/sync", access: "trigger", body: SyncBody, reply: ResultsReplySchema },
  rotate: { method: "POST", path: "/v1/rotate", access: "trigger", body: SecretBody, reply: ResultsReplySchema },
  inject: { method: "POST", path: "/v1/inject", access: "place", body: InjectBody, reply: InjectReportSchema },
  plan: { method: "POST", path: "/v1/plan", access: "read", body: SecretBody, reply: PlanReplySchema },
} as const satisfies Record<string, { method: "GET" | "POST"; path: string; access: RouteAccess; body?: v.GenericSchema; reply: v.GenericSchema }>;

export type RouteName = keyof typeof ROUTES;
export type RouteBody<R extends RouteName> = (typeof ROUTES)[R] extends { body: infer B extends v.GenericSchema } ? v.InferOutput<B> : undefined;
export type RouteReply<R extends RouteName> = v.InferOutput<(typeof ROUTES)[R]["reply"]>;

/** What the server reports about each API call (audit trail, metrics): names only, never a value. */
export interface ApiRequestInfo {
  method: string;
  path: string;
  status: number;
  /** The DsoError code when the request failed. */
  code?: string;
  /** The validated request body (names only: the control API never carries values). */
  body?: unknown;
  /** A plugin call's volume name (`Name`), when it has one. */
  volume?: string;
  /** The names of a plugin call's volume options (`Opts`), never their values. */
  options?: string[];
  /** Why the call was refused or failed, in one line (no value). */
  error?: string;
}

/** The error body of every non-2xx reply. */
export const ErrorReplySchema = v.object({ error: v.object({ code: v.picklist(ERROR_CODES), message: v.string() }) });

/** HTTP status per error code; anything else is 500. */
export const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  USAGE: 400,
  FORBIDDEN: 403,
  SECRET_NOT_FOUND: 404,
  DELIVERY_REFUSED: 409,
  PROVIDER_UNAVAILABLE: 503,
  DOCKER_UNREACHABLE: 503,
  PROVIDER_TIMEOUT: 504,
};
