/**
 * Outbound notifications: a JSON POST to each configured webhook for the events it asked for
 * (the Go DSO's `notifications`; docs/notifications.md). `notify()` only puts the event in a
 * bounded queue per webhook and returns: a slow or dead receiver can delay its own queue, never
 * a rotation. A full queue drops the new event (counted, warned about). Each send is retried
 * with doubling waits on network errors, timeouts, 429 and 5xx. Payloads carry names, short
 * versions and error codes, never a value; URLs and headers (which may hold tokens) are never
 * logged: a webhook is named by its index and host.
 */
import { hostname } from "node:os";
import type { NotificationEvent, NotificationsConfig, WebhookTarget } from "../config/types.ts";
import { DsoError, describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { redact } from "../log/redact.ts";
import { shortVersion } from "../audit/audit-log.ts";

export const NOTIFICATION_SCHEMA_VERSION = 1;
/** First wait before a retry; doubles each time. */
export const RETRY_BASE_MS = 1_000;
const MAX_ERROR_LENGTH = 300;

export interface NotificationDetails {
  secret?: string;
  provider?: string;
  version?: string;
  container?: { id: string; name?: string };
  /** The DSO volume of a refused Mount (no container exists yet then). */
  volume?: string;
  strategy?: string;
  error?: unknown;
}

export interface NotificationPayload {
  v: number;
  event: NotificationEvent;
  time: string;
  agent: { version: string; host: string };
  secret?: string;
  provider?: string;
  version?: string;
  container?: { id: string; name?: string };
  volume?: string;
  strategy?: string;
  error?: { code: string; message: string };
}

export interface NotifierDeps {
  log: Pick<FieldLogger, "warn" | "debug">;
  version: string;
  fetch?: typeof fetch;
  retryBaseMs?: number;
  host?: string;
  /** Called once per event and webhook with how it ended. */
  onOutcome?: (event: NotificationEvent, outcome: "sent" | "failed" | "dropped") => void;
}

export function notificationPayload(event: NotificationEvent, details: NotificationDetails, agent: { version: string; host: string }, now = new Date()): NotificationPayload {
  const payload: NotificationPayload = { v: NOTIFICATION_SCHEMA_VERSION, event, time: now.toISOString(), agent };
  if (details.secret !== undefined) payload.secret = details.secret;
  if (details.provider !== undefined) payload.provider = details.provider;
  if (details.version !== undefined) payload.version = shortVersion(details.version);
  if (details.volume) payload.volume = details.volume;
  if (details.container) payload.container = { id: details.container.id, ...(details.container.name ? { name: details.container.name } : {}) };
  if (details.strategy !== undefined) payload.strategy = details.strategy;
  if (details.error !== undefined && details.error !== null) {
    const code = details.error instanceof DsoError ? details.error.code : "INTERNAL";
    payload.error = { code, message: redact(describeError(details.error)).slice(0, MAX_ERROR_LENGTH) };
  }
  return payload;
}

/** One webhook's queue and its single sender. */
class WebhookQueue {
  private readonly queue: { event: NotificationEvent; body: string }[] = [];
  private running: Promise<void> | undefined;
  private droppedSinceWarning = 0;

  constructor(
    readonly target: WebhookTarget,
    readonly label: string,
    private readonly config: NotificationsConfig,
    private readonly deps: NotifierDeps,
    private readonly stopping: AbortSignal,
  ) {}

  get pending(): number {
    return this.queue.length + (this.running ? 1 : 0);
  }

  offer(event: NotificationEvent, body: string): void {
    if (this.stopping.aborted) return;
    if (this.queue.length >= this.config.queueSize) {
      if (this.droppedSinceWarning++ === 0) {
        this.deps.log.warn("notification queue full: dropping events until the webhook catches up", { webhook: this.label, size: this.config.queueSize });
      }
      this.deps.onOutcome?.(event, "dropped");
      return;
    }
    this.queue.push({ event, body });
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      if (this.stopping.aborted) return;
      const sent = await this.send(next.body);
      this.deps.onOutcome?.(next.event, sent ? "sent" : "failed");
      if (sent) this.droppedSinceWarning = 0;
    }
  }

  private async send(body: string): Promise<boolean> {
    const doFetch = this.deps.fetch ?? fetch;
    const attempts = 1 + this.target.maxRetries;
    let wait = this.deps.retryBaseMs ?? RETRY_BASE_MS;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let problem: string;
      try {
        const response = await doFetch(this.target.url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": `dso/${this.deps.version}`, ...this.target.headers },
          body,
          redirect: "manual",
          signal: AbortSignal.any([AbortSignal.timeout(this.target.timeoutMs), this.stopping]),
        });
        await response.body?.cancel().catch(() => {});
        if (response.status >= 200 && response.status < 300) return true;
        problem = `HTTP ${response.status}`;
        if (response.status < 500 && response.status !== 429) {
          this.deps.log.warn("notification refused by the webhook; not retried", { webhook: this.label, status: response.status });
          return false;
        }
      } catch (error) {
        if (this.stopping.aborted) return false;
        problem = (error as Error).name === "TimeoutError" ? `no answer within ${this.target.timeoutMs} ms` : "connection failed";
      }
      if (attempt === attempts) {
        this.deps.log.warn("notification not delivered", { webhook: this.label, attempts, problem });
        return false;
      }
      this.deps.log.debug("notification failed; retrying", { webhook: this.label, attempt, problem, waitMs: wait });
      await Bun.sleep(wait);
      wait *= 2;
    }
    return false;
  }
}

export class WebhookNotifier {
  private readonly stopController = new AbortController();
  private readonly queues: WebhookQueue[];
  private readonly agent: { version: string; host: string };

  constructor(
    private readonly config: NotificationsConfig,
    private readonly deps: NotifierDeps,
  ) {
    this.agent = { version: deps.version, host: deps.host ?? hostname() };
    const active = config.enabled ? config.webhooks : [];
    this.queues = active.map((target, index) => new WebhookQueue(target, `#${index} (${hostOf(target.url)})`, config, deps, this.stopController.signal));
  }

  /** Queues `event` for every webhook that wants it. Never blocks, never throws. */
  notify(event: NotificationEvent, details: NotificationDetails = {}): void {
    try {
      const wanting = this.queues.filter((q) => q.target.events.includes(event));
      if (wanting.length === 0) return;
      const body = JSON.stringify(notificationPayload(event, details, this.agent));
      for (const queue of wanting) queue.offer(event, body);
    } catch (error) {
      this.deps.log.warn("could not queue a notification", { event, error: describeError(error) });
    }
  }

  /** Events queued or being sent, over all webhooks. */
  get pending(): number {
    return this.queues.reduce((sum, q) => sum + q.pending, 0);
  }

  /** Waits until every queue is empty (tests, and a graceful stop). */
  async idle(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.idle()));
  }

  /** Gives queued events up to `graceMs` to go out, then abandons the rest. */
  async stop(graceMs = 2_000): Promise<void> {
    await Promise.race([this.idle(), Bun.sleep(graceMs)]);
    this.stopController.abort();
    await this.idle();
  }
}

export interface TestResult {
  webhook: string;
  events: NotificationEvent[];
  ok: boolean;
  /** "HTTP 204", "no answer within 10000 ms", "connection failed". */
  result: string;
}

/**
 * `dso notifications test`: one `{"event":"test"}` POST to each webhook, no retries, whatever its
 * event list, so a person can check URL, headers and receiver before a real rotation.
 */
export async function sendTestNotifications(config: NotificationsConfig, deps: Pick<NotifierDeps, "version" | "fetch" | "host">): Promise<TestResult[]> {
  const doFetch = deps.fetch ?? fetch;
  const body = JSON.stringify({ v: NOTIFICATION_SCHEMA_VERSION, event: "test", time: new Date().toISOString(), agent: { version: deps.version, host: deps.host ?? hostname() } });
  return Promise.all(
    config.webhooks.map(async (target, index): Promise<TestResult> => {
      const webhook = `#${index} (${hostOf(target.url)})`;
      try {
        const response = await doFetch(target.url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": `dso/${deps.version}`, ...target.headers },
          body,
          redirect: "manual",
          signal: AbortSignal.timeout(target.timeoutMs),
        });
        await response.body?.cancel().catch(() => {});
        return { webhook, events: target.events, ok: response.status >= 200 && response.status < 300, result: `HTTP ${response.status}` };
      } catch (error) {
        const result = (error as Error).name === "TimeoutError" ? `no answer within ${target.timeoutMs} ms` : "connection failed";
        return { webhook, events: target.events, ok: false, result };
      }
    }),
  );
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "?";
  }
}
