/**
 * The short-lived child that serves values (fetches, and dynamic credentials' issues) (made of the same parts as the long-lived provider
 * process: a ProviderConnection whose stdout is read into buffers the agent owns). Calls that
 * arrive while one works join it; it is shut down as soon as no fetch is in flight, so no
 * provider process keeps a value past its fetch. A dead one is replaced by the next fetch.
 *
 * With `keepSpareReady` (the agent's change-event consumer asks) one more child waits, started and
 * configured but holding no value (only the credentials the long-lived process holds too), so a
 * wave does not wait for a child's start: 0.1 s on a quiet machine, 1–2.5 s on a loaded one (issue
 * 23). The next spare starts SPARE_START_DELAY_MS after a fetch, not during the wave's delivery.
 */
import type { ConnectionOptions } from "./provider-connection.ts";
import { ProviderConnection } from "./provider-connection.ts";
import type { IssueParams, LeaseInfo, ParamsOf, ResultOf, SecretRef } from "./protocol.ts";
import type { FetchedItem } from "./wire-values.ts";

/** How long after a child took a fetch its replacement spare starts. */
export const SPARE_START_DELAY_MS = 500;

interface Serving {
  connection: ProviderConnection;
  ready: Promise<void>;
  calls: number;
}

export class FetchChild {
  private serving?: Serving;
  private spare?: Serving;
  private spareTimer?: ReturnType<typeof setTimeout>;
  private keepSpare = false;
  private stopped = false;

  /** `connection`: the long-lived process's options, minus its output reader and owner hooks. */
  constructor(
    private readonly connection: Omit<ConnectionOptions, "ownedOutput" | "onAnswer" | "onFailed" | "onLost">,
    private readonly onLost: () => void,
  ) {}

  /** The pid of the child serving fetches now, if any. */
  get pid(): number | undefined {
    return this.serving?.connection.open ? this.serving.connection.child.pid : undefined;
  }

  /** Values for `refs`: views into one buffer the caller owns and wipes. */
  async fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchedItem[]> {
    return ((await this.serve("fetch", { refs }, signal)) as unknown as { items: FetchedItem[] }).items;
  }

  /** A new dynamic credential (its value as one fetched item the caller wipes) and its lease. */
  async issue(params: IssueParams, signal?: AbortSignal): Promise<{ item: FetchedItem; lease: LeaseInfo }> {
    return (await this.serve("issue", params, signal)) as unknown as { item: FetchedItem; lease: LeaseInfo };
  }

  private async serve<M extends "fetch" | "issue">(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    const serving = this.join();
    serving.calls++;
    try {
      await serving.ready;
      return await serving.connection.call(method, params, signal);
    } finally {
      if (--serving.calls === 0) {
        if (this.serving === serving) this.serving = undefined;
        void serving.connection.shutdown();
      }
    }
  }

  /** Keep one child started and configured, with no value, for the next fetch. */
  keepSpareReady(): void {
    if (this.keepSpare) return;
    this.keepSpare = true;
    this.startSpareIn(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.spareTimer);
    const [serving, spare] = [this.serving, this.spare];
    this.serving = undefined;
    this.spare = undefined;
    await Promise.all([serving?.connection.shutdown(), spare?.connection.shutdown()]);
  }

  private join(): Serving {
    if (this.serving?.connection.open) return this.serving;
    const spare = this.spare;
    this.spare = undefined;
    this.serving = spare?.connection.open ? spare : this.open();
    this.startSpareIn(SPARE_START_DELAY_MS);
    return this.serving;
  }

  private startSpareIn(ms: number): void {
    if (!this.keepSpare || this.stopped || this.spare || this.spareTimer) return;
    this.spareTimer = setTimeout(() => {
      this.spareTimer = undefined;
      if (this.keepSpare && !this.stopped && !this.spare) this.spare = this.open();
    }, ms);
  }

  private open(): Serving {
    const connection = ProviderConnection.open({
      ...this.connection,
      ownedOutput: true,
      onAnswer: () => {},
      onFailed: () => {},
      onLost: () => {
        // A spare that died unused never carried a fetch: dropped, the next fetch starts another
        // (never a loop of restarts when the child cannot start).
        if (this.spare?.connection === connection) this.spare = undefined;
        else this.onLost();
      },
    });
    const serving: Serving = { connection, ready: connection.ready(), calls: 0 };
    serving.ready.catch(() => {
      if (this.spare === serving) this.spare = undefined;
    });
    return serving;
  }
}
