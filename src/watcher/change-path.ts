/**
 * The one way a detected change reaches delivery. Every detector publishes a typed change with
 * its real cause — a poll, the webhook, a change event, a fetch that saw a new fingerprint (a
 * start, a Mount, `dso rotate`), a lease that must be replaced — and every target kind subscribes (labelled containers' and DSO volumes' wave scheduler, Swarm
 * services). The agent builds it before the Docker side: changes published before it opens (dockerd
 * not answering yet, target kinds not subscribed) are kept, merged per cause, and handed to every
 * subscriber when the Docker side has subscribed them all and opens it, so none is lost to the
 * order things start in.
 */

/** What noticed the change; also the `trigger` of the deliveries it causes (docs/audit.md). */
export type ChangeCause = "poll" | "webhook" | "event" | "fetch" | "lease";

export interface SecretChange {
  /** Secret names, never values. */
  readonly names: readonly string[];
  readonly cause: ChangeCause;
}

export type ChangeSubscriber = (change: SecretChange) => void;

export class ChangePath {
  private readonly subscribers = new Set<ChangeSubscriber>();
  private opened = false;
  /** Changes published before open(), merged per cause (first-seen order). */
  private readonly pending = new Map<ChangeCause, Set<string>>();

  constructor(private readonly onSubscriberError: (error: unknown, change: SecretChange) => void = () => {}) {}

  publish(change: SecretChange): void {
    if (change.names.length === 0) return;
    if (!this.opened) {
      const names = this.pending.get(change.cause) ?? new Set<string>();
      for (const name of change.names) names.add(name);
      this.pending.set(change.cause, names);
      return;
    }
    for (const subscriber of this.subscribers) this.deliver(subscriber, change);
  }

  /** Hands `subscriber` every change published from now on (after open(), the buffered ones too); returns the unsubscribe. */
  subscribe(subscriber: ChangeSubscriber): () => void {
    this.subscribers.add(subscriber);
    return () => void this.subscribers.delete(subscriber);
  }

  /** The target kinds are subscribed: hand them what was kept, then pass changes on as they come. */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    const buffered = [...this.pending].map(([cause, names]): SecretChange => ({ names: [...names], cause }));
    this.pending.clear();
    for (const change of buffered) this.publish(change);
  }

  /** How many causes have changes waiting for open(). */
  get buffered(): number {
    return this.pending.size;
  }

  private deliver(subscriber: ChangeSubscriber, change: SecretChange): void {
    try {
      subscriber(change);
    } catch (error) {
      this.onSubscriberError(error, change);
    }
  }
}
