/**
 * The short-lived child that serves values (fetches, and dynamic credentials' issues) (made of the same parts as the long-lived provider
 * process: a ProviderConnection whose stdout is read into buffers the agent owns). Calls that
 * arrive while one works join it; it is shut down as soon as no fetch is in flight, so no
 * provider process keeps a value past its fetch. A dead one is replaced by the next fetch.
 */
import type { ConnectionOptions } from "./provider-connection.ts";
import { ProviderConnection } from "./provider-connection.ts";
import type { IssueParams, LeaseInfo, ParamsOf, ResultOf, SecretRef } from "./protocol.ts";
import type { FetchedItem } from "./wire-values.ts";

interface Serving {
  connection: ProviderConnection;
  ready: Promise<void>;
  calls: number;
}

export class FetchChild {
  private serving?: Serving;

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

  async stop(): Promise<void> {
    const serving = this.serving;
    this.serving = undefined;
    await serving?.connection.shutdown();
  }

  private join(): Serving {
    if (this.serving?.connection.open) return this.serving;
    const connection = ProviderConnection.open({
      ...this.connection,
      ownedOutput: true,
      onAnswer: () => {},
      onFailed: () => {},
      onLost: () => this.onLost(),
    });
    const serving: Serving = { connection, ready: connection.ready(), calls: 0 };
    serving.ready.catch(() => {});
    this.serving = serving;
    return serving;
  }
}
