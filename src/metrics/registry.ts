/**
 * Every Prometheus metric of the agent, in one registry built with prom-client (the client most
 * Node services use; pure JavaScript, works under Bun and inside the compiled binary). Call
 * sites use the typed methods below, never prom-client directly, so label values come only from
 * closed sets (modes, strategies, outcomes, RPC methods) or from names in dso.yaml (providers,
 * secrets): a label never holds a secret value or anything derived from one. docs/metrics.md
 * lists every metric.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { STRATEGY_NAMES } from "../config/schema.ts";
import { DsoError, type ErrorCode } from "../errors.ts";

/** "ok", or the DsoError code of the failure: a closed set, so it is safe as a label. */
export type Outcome = "ok" | ErrorCode;

export const DELIVERY_MODES = ["plugin", "volume", "exec", "procfs", "env"] as const;
export type DeliveryModeLabel = (typeof DELIVERY_MODES)[number];
export const PROVIDER_OPERATIONS = ["configure", "fingerprint", "fetch", "health", "events", "events_done", "events_status"] as const;
export type ProviderOperation = (typeof PROVIDER_OPERATIONS)[number];
export const NOTIFICATION_OUTCOMES = ["sent", "failed", "dropped"] as const;
export type NotificationOutcome = (typeof NOTIFICATION_OUTCOMES)[number];

export const CHANGE_CAUSES = ["poll", "webhook", "event", "fetch", "lease"] as const;
export const CHANGE_EVENT_OUTCOMES = ["checked", "undeclared", "malformed", "too_large", "not_a_secret_change", "queue_error"] as const;

/** Where a latency lands: from a few ms (a tar into a volume) to minutes (a rolling replacement). */
const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const OTHER = "other";

/** The outcome label of a finished operation: "ok" without an error, else its DsoError code. */
export function outcomeOf(error?: unknown): Outcome {
  if (error === undefined || error === null) return "ok";
  return error instanceof DsoError ? error.code : "INTERNAL";
}

function oneOf<T extends string>(value: string, allowed: readonly T[]): T | typeof OTHER {
  return (allowed as readonly string[]).includes(value) ? (value as T) : OTHER;
}

function outcomeLabel(outcome: Outcome | unknown): string {
  return typeof outcome === "string" && /^(ok|[A-Z_]{1,40})$/.test(outcome) ? outcome : "INTERNAL";
}

export interface SecretRefLabel {
  secret: string;
  provider: string;
}

export class Metrics {
  readonly registry = new Registry();
  /** Last successful poll per secret, for the staleness gauge (computed at scrape time). */
  private readonly lastPolled = new Map<string, { provider: string; at: number }>();

  private readonly polls = new Counter({
    name: "dso_provider_polls_total",
    help: "Fingerprint polls of a provider (one per poll of all its secrets), by outcome",
    labelNames: ["provider", "outcome"],
    registers: [this.registry],
  });
  private readonly providerCalls = new Counter({
    name: "dso_provider_calls_total",
    help: "RPC calls to provider processes, by provider, operation and outcome",
    labelNames: ["provider", "operation", "outcome"],
    registers: [this.registry],
  });
  private readonly providerCallSeconds = new Histogram({
    name: "dso_provider_call_duration_seconds",
    help: "Duration of RPC calls to provider processes",
    labelNames: ["provider", "operation"],
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });
  private readonly changesDetected = new Counter({
    name: "dso_change_detected_total",
    help: "Secrets found changed (or seen first, or recovered) and handed to delivery, by what noticed it",
    labelNames: ["cause"],
    registers: [this.registry],
  });
  private readonly changeEvents = new Counter({
    name: "dso_change_events_total",
    help: "Messages read from a provider's change-event queue, by what became of them",
    labelNames: ["provider", "outcome"],
    registers: [this.registry],
  });
  private readonly changeQueueGauge = new Gauge({
    name: "dso_change_event_queue_up",
    help: "1 while a provider's change-event queue answers, 0 during an outage (polling continues)",
    labelNames: ["provider"],
    registers: [this.registry],
  });
  private readonly valueFetches = new Counter({
    name: "dso_secret_value_fetches_total",
    help: "Secret values fetched from providers (each value once), by provider and outcome",
    labelNames: ["provider", "outcome"],
    registers: [this.registry],
  });
  private readonly providerRestarts = new Counter({
    name: "dso_provider_restarts_total",
    help: "Provider processes restarted after a crash, hang or failed health check",
    labelNames: ["provider"],
    registers: [this.registry],
  });
  private readonly deliveries = new Counter({
    name: "dso_deliveries_total",
    help: "Deliveries of a secret file set into one container target, by mode and outcome",
    labelNames: ["mode", "outcome"],
    registers: [this.registry],
  });
  private readonly deliverySeconds = new Histogram({
    name: "dso_delivery_duration_seconds",
    help: "Duration of one delivery into a container target",
    labelNames: ["mode"],
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });
  private readonly rotations = new Counter({
    name: "dso_rotations_total",
    help: "Rotations applied to a container (delivery plus its strategy), by strategy and outcome",
    labelNames: ["strategy", "outcome"],
    registers: [this.registry],
  });
  private readonly changeToDelivered = new Histogram({
    name: "dso_change_to_delivered_seconds",
    help: "From the poll that saw a new version to the new files delivered in a container",
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });
  private readonly eventReconnects = new Counter({
    name: "dso_docker_event_stream_reconnects_total",
    help: "Reconnections of the Docker event stream",
    registers: [this.registry],
  });
  private readonly leaks = new Counter({
    name: "dso_secret_leaks_total",
    help: "Lines of a served container's output that held a value DSO delivered (leak sentinel), by secret",
    labelNames: ["secret"],
    registers: [this.registry],
  });
  private readonly leftovers = new Gauge({
    name: "dso_leftover_references",
    help: "Running containers with a literal dso:// or dsofile:// in their environment (brought up without dso up)",
    registers: [this.registry],
  });
  private readonly reconcilePasses = new Counter({
    name: "dso_reconcile_passes_total",
    help: "Passes over every labelled container comparing wanted and actual versions, by outcome",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  private readonly reconcileSeconds = new Histogram({
    name: "dso_reconcile_duration_seconds",
    help: "Duration of one reconcile pass",
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });
  private readonly notifications = new Counter({
    name: "dso_notifications_total",
    help: "Outbound notifications by event and outcome (sent, failed after retries, dropped on a full queue)",
    labelNames: ["event", "outcome"],
    registers: [this.registry],
  });
  private readonly auditEvents = new Counter({
    name: "dso_audit_events_total",
    help: "Audit records written, by event",
    labelNames: ["event"],
    registers: [this.registry],
  });

  constructor(options: { version?: string; processMetrics?: boolean } = {}) {
    const self = this;
    new Gauge({
      name: "dso_secret_staleness_seconds",
      help: "Seconds since the last successful poll of each secret",
      labelNames: ["secret", "provider"],
      registers: [this.registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const [secret, { provider, at }] of self.lastPolled) this.set({ secret, provider }, Math.max(0, (now - at) / 1000));
      },
    });
    if (options.version !== undefined) {
      new Gauge({ name: "dso_build_info", help: "The running dso version (value 1)", labelNames: ["version"], registers: [this.registry] }).set(
        { version: options.version },
        1,
      );
    }
    // process_resident_memory_bytes, process_cpu_seconds_total, ... (collected at scrape time).
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** One fingerprint poll of a provider finished; `secrets` were answered (their staleness resets). */
  pollFinished(p: { provider: string; outcome: Outcome; secrets?: readonly string[]; at?: number }): void {
    this.polls.inc({ provider: p.provider, outcome: outcomeLabel(p.outcome) });
    if (p.outcome !== "ok") return;
    const at = p.at ?? Date.now();
    for (const secret of p.secrets ?? []) this.lastPolled.set(secret, { provider: p.provider, at });
  }

  /** A secret is no longer configured or used: stop reporting its staleness. */
  forgetSecret(secret: string): void {
    this.lastPolled.delete(secret);
  }

  providerCall(p: { provider: string; operation: ProviderOperation | string; outcome: Outcome; seconds: number }): void {
    const operation = oneOf(p.operation, PROVIDER_OPERATIONS);
    this.providerCalls.inc({ provider: p.provider, operation, outcome: outcomeLabel(p.outcome) });
    this.providerCallSeconds.observe({ provider: p.provider, operation }, p.seconds);
  }

  valuesFetched(p: { provider: string; outcome: Outcome; count?: number }): void {
    this.valueFetches.inc({ provider: p.provider, outcome: outcomeLabel(p.outcome) }, p.count ?? 1);
  }

  providerRestarted(provider: string): void {
    this.providerRestarts.inc({ provider });
  }

  delivered(p: { mode: DeliveryModeLabel | string; outcome: Outcome; seconds: number }): void {
    const mode = oneOf(p.mode, DELIVERY_MODES);
    this.deliveries.inc({ mode, outcome: outcomeLabel(p.outcome) });
    this.deliverySeconds.observe({ mode }, p.seconds);
  }

  rotated(p: { strategy: string; outcome: Outcome }): void {
    this.rotations.inc({ strategy: oneOf(p.strategy, STRATEGY_NAMES), outcome: outcomeLabel(p.outcome) });
  }

  changeDelivered(seconds: number): void {
    this.changeToDelivered.observe(seconds);
  }

  /** `secret` is a name, never a value; "credential" for a provider credential. */
  leakSeen(secret: string): void {
    this.leaks.inc({ secret });
  }

  leftoverReferences(count: number): void {
    this.leftovers.set(count);
  }

  changeDetected(cause: string, count: number): void {
    this.changesDetected.inc({ cause: oneOf(cause, CHANGE_CAUSES) }, count);
  }

  changeEvent(provider: string, outcome: string, count = 1): void {
    this.changeEvents.inc({ provider, outcome: oneOf(outcome, CHANGE_EVENT_OUTCOMES) }, count);
  }

  changeQueueUp(provider: string, up: boolean): void {
    this.changeQueueGauge.set({ provider }, up ? 1 : 0);
  }

  dockerEventsReconnected(): void {
    this.eventReconnects.inc();
  }

  reconcilePass(p: { outcome: Outcome; seconds: number }): void {
    this.reconcilePasses.inc({ outcome: outcomeLabel(p.outcome) });
    this.reconcileSeconds.observe(p.seconds);
  }

  notification(p: { event: string; outcome: NotificationOutcome }): void {
    this.notifications.inc({ event: p.event, outcome: p.outcome });
  }

  audited(event: string): void {
    this.auditEvents.inc({ event });
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
