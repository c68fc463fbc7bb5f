/**
 * The one object the agent tells what happened: metrics, the audit trail and notifications are
 * fed from here, so each place in the agent makes one call (see docs/metrics.md, docs/audit.md,
 * docs/notifications.md for what each call produces). Built from dso.yaml; what is turned off
 * costs nothing and every method is safe to call regardless. No method throws: observing must
 * never break a delivery.
 */
import { AuditLog, openAuditLog, type AuditEvent, type AuditTrigger } from "../audit/audit-log.ts";
import type { ApiRequestInfo } from "../api/contract.ts";
import type { DsoConfig } from "../config/types.ts";
import { DsoError, describeError, isErrorCode } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { Metrics, outcomeOf, type ProviderOperation } from "../metrics/registry.ts";
import { METRICS_PATH, metricsResponse, startMetricsListener, type MetricsListener } from "../metrics/server.ts";
import { WebhookNotifier } from "../notify/webhook-notifier.ts";
import type { ProviderObserver } from "../rpc/supervisor.ts";

export interface ContainerRef {
  id: string;
  name?: string;
}

export interface SecretVersion {
  name: string;
  version?: string;
}

export interface ObserverDeps {
  log: FieldLogger;
  version: string;
  fetch?: typeof fetch;
  /** Tests: webhook retry wait. */
  retryBaseMs?: number;
  /** Tests: leave out process_* metrics. */
  processMetrics?: boolean;
}

export class Observer {
  readonly metrics: Metrics | undefined;
  readonly audit: AuditLog | undefined;
  readonly notifier: WebhookNotifier | undefined;
  private listener: MetricsListener | undefined;
  private readonly providerHealthy = new Map<string, boolean>();

  constructor(
    private readonly config: Pick<DsoConfig, "agent" | "notifications">,
    private readonly deps: ObserverDeps,
  ) {
    const { metrics, audit } = config.agent;
    this.metrics = metrics.enabled ? new Metrics({ version: deps.version, processMetrics: deps.processMetrics }) : undefined;
    this.audit = audit.enabled ? openAuditLog(audit.output, (event) => this.metrics?.audited(event)) : undefined;
    this.notifier =
      config.notifications.enabled && config.notifications.webhooks.length > 0
        ? new WebhookNotifier(config.notifications, {
            log: deps.log,
            version: deps.version,
            ...(deps.fetch ? { fetch: deps.fetch } : {}),
            ...(deps.retryBaseMs === undefined ? {} : { retryBaseMs: deps.retryBaseMs }),
            onOutcome: (event, outcome) => this.metrics?.notification({ event, outcome }),
          })
        : undefined;
  }

  /** Opens the metrics listener when agent.metrics.listen is set. */
  start(): void {
    const listen = this.config.agent.metrics.listen;
    if (!this.metrics || listen === undefined || this.listener) return;
    this.listener = startMetricsListener(this.metrics, listen);
    this.deps.log.info("metrics listener started", { url: this.listener.url });
  }

  /** The listener's scrape URL, when one is open. */
  get metricsUrl(): string | undefined {
    return this.listener?.url;
  }

  async stop(): Promise<void> {
    await this.listener?.stop();
    this.listener = undefined;
    await this.notifier?.stop();
    this.audit?.close();
  }

  /** For startControlServer's rawRoutes: GET /metrics on the agent socket. */
  rawRoutes(): Record<string, (req: Request) => Promise<Response>> {
    const metrics = this.metrics;
    return metrics ? { [METRICS_PATH]: (req) => metricsResponse(metrics, req) } : {};
  }

  /** For startControlServer's onRequest: audits every call on the agent's sockets (plugin routes, reads and refusals included). */
  apiRequest(info: ApiRequestInfo, callerUid?: number): void {
    this.safely(() => {
      const outcome = info.code ?? (info.status < 400 ? "ok" : "BAD_REQUEST");
      this.record({
        event: "api",
        outcome,
        request: { method: info.method, path: info.path, status: info.status },
        ...apiSubject(info.body),
        ...(info.volume === undefined ? {} : { volume: info.volume }),
        ...(info.options === undefined ? {} : { options: info.options }),
        ...(callerUid === undefined ? {} : { callerUid }),
        ...(info.error === undefined ? {} : { error: new DsoError(isErrorCode(outcome) ? outcome : "INTERNAL", info.error) }),
      });
    });
  }

  /** A fingerprint poll of `provider` finished; `secrets` are those it answered for. */
  pollFinished(p: { provider: string; secrets?: readonly string[]; error?: unknown }): void {
    this.safely(() => this.metrics?.pollFinished({ provider: p.provider, outcome: outcomeOf(p.error), ...(p.secrets ? { secrets: p.secrets } : {}) }));
  }

  /** One RPC call to a provider process finished (configure, fingerprint, fetch, health). */
  providerCall(p: { provider: string; operation: ProviderOperation; seconds: number; error?: unknown }): void {
    this.safely(() => this.metrics?.providerCall({ provider: p.provider, operation: p.operation, outcome: outcomeOf(p.error), seconds: p.seconds }));
  }

  /** Values fetched (count = secrets in the fetch call). */
  valuesFetched(p: { provider: string; count: number; error?: unknown }): void {
    this.safely(() => this.metrics?.valuesFetched({ provider: p.provider, outcome: outcomeOf(p.error), count: p.count }));
  }

  /** For `new ProviderProcess({ ..., observer: observer.forProvider(name) })`: calls, restarts, health, fetches. */
  forProvider(provider: string): ProviderObserver {
    return {
      call: (p) => this.providerCall({ provider, operation: p.operation as ProviderOperation, seconds: p.seconds, ...(p.error === undefined ? {} : { error: p.error }) }),
      restarted: () => this.providerRestarted(provider),
      health: (healthy, reason) =>
        this.providerHealth({ provider, healthy, ...(reason === undefined ? {} : { error: new DsoError("PROVIDER_UNAVAILABLE", `provider ${provider}: ${reason}`) }) }),
      fetched: (codes) =>
        this.safely(() => {
          const counts = new Map<string, number>();
          for (const code of codes) counts.set(code ?? "ok", (counts.get(code ?? "ok") ?? 0) + 1);
          for (const [outcome, count] of counts) this.metrics?.valuesFetched({ provider, outcome: outcome as never, count });
        }),
    };
  }

  providerRestarted(provider: string): void {
    this.safely(() => this.metrics?.providerRestarted(provider));
  }

  /**
   * The provider's health as the supervisor sees it, reported on every change (or every poll):
   * notifies provider_unavailable when it goes down and provider_recovered when it comes back.
   */
  providerHealth(p: { provider: string; healthy: boolean; error?: unknown }): void {
    this.safely(() => {
      const before = this.providerHealthy.get(p.provider);
      this.providerHealthy.set(p.provider, p.healthy);
      if (before === p.healthy || (before === undefined && p.healthy)) return;
      if (!p.healthy) this.notifier?.notify("provider_unavailable", { provider: p.provider, error: p.error });
      else this.notifier?.notify("provider_recovered", { provider: p.provider });
    });
  }

  /**
   * One delivery of a file set (or env re-creation) into one container target finished.
   * `changedAt` (ms epoch): when the poll saw the new version, for change→delivered latency.
   */
  deliveryFinished(p: {
    container: ContainerRef;
    secrets: SecretVersion[];
    mode: string;
    path?: string;
    trigger?: AuditTrigger;
    seconds: number;
    changedAt?: number;
    error?: unknown;
  }): void {
    this.safely(() => {
      const outcome = outcomeOf(p.error);
      this.metrics?.delivered({ mode: p.mode, outcome, seconds: p.seconds });
      if (outcome === "ok" && p.changedAt !== undefined) this.metrics?.changeDelivered(Math.max(0, (Date.now() - p.changedAt) / 1000));
      this.record({
        event: "delivery",
        outcome,
        container: p.container,
        secrets: p.secrets,
        mode: p.mode,
        ...(p.path ? { path: p.path } : {}),
        ...(p.trigger ? { trigger: p.trigger } : {}),
        durationMs: p.seconds * 1000,
        ...(p.error === undefined ? {} : { error: p.error }),
      });
      if (outcome !== "ok") {
        for (const s of p.secrets) this.notifier?.notify("delivery_failed", { secret: s.name, version: s.version, container: p.container, error: p.error });
      }
    });
  }

  /** The container's strategy ran once after a delivery (signal, restart, rolling, none). */
  strategyFinished(p: { container: ContainerRef; strategy: string; action?: string; secrets?: SecretVersion[]; seconds: number; error?: unknown }): void {
    this.safely(() =>
      this.record({
        event: "strategy",
        outcome: outcomeOf(p.error),
        container: p.container,
        strategy: p.strategy,
        ...(p.action ? { action: p.action } : {}),
        ...(p.secrets ? { secrets: p.secrets } : {}),
        durationMs: p.seconds * 1000,
        ...(p.error === undefined ? {} : { error: p.error }),
      }),
    );
  }

  /**
   * A dynamic credential's lease could not be kept (renewal or replacement failing), raised once
   * per trouble well before expiry: a `rotation` audit line with the error and `rotation_failed`.
   */
  leaseAtRisk(p: { secret: string; consumer: string; provider: string; operation: string; error: unknown; secondsLeft: number }): void {
    this.safely(() => {
      const container = p.consumer === "shared" ? undefined : { id: p.consumer };
      const error = p.error instanceof DsoError ? p.error : new DsoError("PROVIDER_UNAVAILABLE", `lease ${p.operation} failed for "${p.secret}" (${Math.round(p.secondsLeft)} s before the credential expires)`);
      this.record({ event: "rotation", outcome: outcomeOf(error), secrets: [{ name: p.secret }], action: `lease ${p.operation}`, ...(container ? { container } : {}), error });
      this.notifier?.notify("rotation_failed", { secret: p.secret, provider: p.provider, ...(container ? { container } : {}), error });
    });
  }

  /** A rotation of one container finished: new version delivered and its strategy run (or failed). */
  rotationFinished(p: { container: ContainerRef; secret: SecretVersion; provider?: string; strategy: string; trigger?: AuditTrigger; error?: unknown }): void {
    this.safely(() => {
      const outcome = outcomeOf(p.error);
      this.metrics?.rotated({ strategy: p.strategy, outcome });
      this.record({
        event: "rotation",
        outcome,
        container: p.container,
        secrets: [p.secret],
        strategy: p.strategy,
        ...(p.trigger ? { trigger: p.trigger } : {}),
        ...(p.error === undefined ? {} : { error: p.error }),
      });
      const event = outcome === "ok" ? "rotation_succeeded" : "rotation_failed";
      this.notifier?.notify(event, {
        secret: p.secret.name,
        version: p.secret.version,
        ...(p.provider ? { provider: p.provider } : {}),
        container: p.container,
        strategy: p.strategy,
        error: p.error,
      });
    });
  }

  /**
   * VolumeDriver.Mount answered (files written, or refused): a delivery in plugin mode for the
   * metrics (dso_deliveries_total, the latency histogram) and `delivery_failed` when refused.
   */
  volumeMounted(p: { volume: string; mountId?: string; secrets: SecretVersion[]; seconds: number; error?: unknown }): void {
    this.safely(() => {
      const outcome = outcomeOf(p.error);
      this.metrics?.delivered({ mode: "plugin", outcome, seconds: p.seconds });
      this.volumeEvent("mount", p);
      if (outcome !== "ok") {
        for (const s of p.secrets) this.notifier?.notify("delivery_failed", { secret: s.name, ...(s.version ? { version: s.version } : {}), volume: p.volume, error: p.error });
      }
    });
  }

  /** VolumeDriver.Unmount answered. */
  volumeUnmounted(p: { volume: string; mountId?: string; error?: unknown }): void {
    this.safely(() => this.volumeEvent("unmount", { ...p, secrets: undefined }));
  }

  /** The leak sentinel saw a delivered value in a container's output (counted always, audited when reported). */
  leakDetected(p: { container: ContainerRef; secret?: string; reported: boolean }): void {
    this.safely(() => {
      this.metrics?.leakSeen(p.secret ?? "credential");
      if (p.reported) this.record({ event: "leak", outcome: "LEAK_DETECTED", container: p.container, ...(p.secret ? { secrets: [{ name: p.secret }] } : {}) });
    });
  }

  /** A running container has a literal dso:// or dsofile:// reference in its environment (not brought up with dso up). */
  leftoverReference(p: { container: ContainerRef; variables: string[] }): void {
    this.safely(() => {
      const secrets = [...new Set(p.variables.map((v) => v.slice(v.indexOf("=") + 1).replace(/^dso(file)?:\/\//, "")))].map((name) => ({ name }));
      this.record({ event: "leftover_reference", outcome: "LEFTOVER_REFERENCE", container: p.container, secrets });
    });
  }

  /** How many running containers hold such references now. */
  leftoverReferenceCount(count: number): void {
    this.safely(() => this.metrics?.leftoverReferences(count));
  }

  /** Change detection (`dso_change_detected_total{cause}`) and the change-event queues. */
  changeDetected(cause: string, count: number): void {
    this.safely(() => this.metrics?.changeDetected(cause, count));
  }

  changeEvent(provider: string, outcome: string, count?: number): void {
    this.safely(() => this.metrics?.changeEvent(provider, outcome, count));
  }

  changeQueueUp(provider: string, up: boolean): void {
    this.safely(() => this.metrics?.changeQueueUp(provider, up));
  }

  dockerEventsReconnected(): void {
    this.safely(() => this.metrics?.dockerEventsReconnected());
  }

  reconcilePass(p: { seconds: number; error?: unknown }): void {
    this.safely(() => this.metrics?.reconcilePass({ outcome: outcomeOf(p.error), seconds: p.seconds }));
  }

  /** A secret left the config: its staleness is no longer reported. */
  forgetSecret(name: string): void {
    this.safely(() => this.metrics?.forgetSecret(name));
  }

  private volumeEvent(event: "mount" | "unmount", p: { volume: string; mountId?: string; secrets?: SecretVersion[]; error?: unknown }): void {
    this.record({
      event,
      outcome: outcomeOf(p.error),
      volume: p.volume,
      mode: "plugin",
      ...(p.mountId ? { mountId: p.mountId } : {}),
      ...(p.secrets ? { secrets: p.secrets } : {}),
      ...(p.error === undefined ? {} : { error: p.error }),
    });
  }

  private record(event: AuditEvent): void {
    this.audit?.record(event);
  }

  private safely(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.deps.log.warn("observer failed (the action it observed is not affected)", { error: describeError(error) });
    }
  }
}

/** The names a control API body carries (`secret`, `container`), for the audit line; nothing else. */
function apiSubject(body: unknown): Pick<AuditEvent, "secrets" | "target"> {
  if (body === null || typeof body !== "object") return {};
  const b = body as Record<string, unknown>;
  return {
    ...(typeof b.secret === "string" ? { secrets: [{ name: b.secret }] } : {}),
    ...(Array.isArray(b.secrets) && b.secrets.every((s) => typeof s === "string") ? { secrets: (b.secrets as string[]).map((name) => ({ name })) } : {}),
    ...(typeof b.container === "string" ? { target: b.container } : {}),
  };
}
