/**
 * The Docker stream of the Watcher: GET /events for containers (and Swarm services), reconnecting with backoff and
 * `since=` the last event seen. The daemon keeps only 256 events and forgets them on restart,
 * so every (re)connect is followed by a full reconcile (onConnected).
 */
import type { FieldLogger } from "../log/logger.ts";
import type Dockerode from "dockerode";
import * as v from "valibot";
import { describeError } from "../errors.ts";

export const RECONNECT_BASE_MS = 500;
export const RECONNECT_MAX_MS = 30_000;

const EventSchema = v.object({
  Type: v.string(),
  Action: v.string(),
  Actor: v.object({ ID: v.string(), Attributes: v.optional(v.record(v.string(), v.string())) }),
  time: v.optional(v.number()),
  timeNano: v.optional(v.number()),
});
export type DockerEvent = v.InferOutput<typeof EventSchema>;

export interface EventWatcherDeps {
  docker: Dockerode;
  onEvent(event: DockerEvent): void;
  /** Called after every successful (re)connect, before events flow: reconcile here. */
  onConnected(): Promise<void>;
  log: Pick<FieldLogger, "info" | "warn">;
}

export class DockerEventWatcher {
  private abort = new AbortController();
  private lastEventTime?: number;
  private failures = 0;
  private running?: Promise<void>;
  connected = false;

  constructor(private readonly deps: EventWatcherDeps) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running?.catch(() => {});
  }

  private async loop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        await this.streamOnce();
        this.failures = 0;
      } catch (error) {
        if (this.abort.signal.aborted) return;
        this.failures++;
        this.deps.log.warn("docker event stream lost; reconnecting", { error: describeError(error), attempt: this.failures });
      }
      this.connected = false;
      if (this.abort.signal.aborted) return;
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 1.5 ** Math.max(0, this.failures - 1));
      await Bun.sleep(delay);
    }
  }

  private async streamOnce(): Promise<void> {
    // Service creation (on a Swarm manager) too: a new DSO service gets its secrets now, not at the next full pass.
    const opts: Record<string, unknown> = { filters: { type: ["container", "service"], event: ["start", "die", "destroy", "create"] } };
    if (this.lastEventTime !== undefined) opts.since = String(this.lastEventTime);
    const stream = (await this.deps.docker.getEvents(opts)) as NodeJS.ReadableStream & { destroy?(): void };
    const onAbort = () => stream.destroy?.();
    this.abort.signal.addEventListener("abort", onAbort, { once: true });
    try {
      this.connected = true;
      if (this.failures > 0) this.deps.log.info("docker event stream reconnected");
      await this.deps.onConnected();
      let buffer = "";
      for await (const chunk of stream as AsyncIterable<Buffer | string>) {
        buffer += chunk.toString();
        let nl = buffer.indexOf("\n");
        while (nl !== -1) {
          this.handleLine(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
          nl = buffer.indexOf("\n");
        }
      }
      if (!this.abort.signal.aborted) throw new Error("the daemon closed the event stream");
    } finally {
      this.abort.signal.removeEventListener("abort", onAbort);
    }
  }

  private handleLine(line: string): void {
    if (!line.trim()) return;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      return;
    }
    const parsed = v.safeParse(EventSchema, raw);
    if (!parsed.success) return;
    if (parsed.output.time !== undefined) this.lastEventTime = parsed.output.time;
    this.deps.onEvent(parsed.output);
  }
}
