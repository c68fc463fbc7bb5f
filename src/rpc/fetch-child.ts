/**
 * The short-lived child that serves values (fetches, and dynamic credentials' issues) (made of the same parts as the long-lived provider
 * process: a ProviderConnection whose stdout is read into buffers the agent owns). Calls that
 * arrive while one works join it; it is shut down as soon as no fetch is in flight, so no
 * provider process keeps a value past its fetch. A dead one is replaced by the next fetch.
 *
 * A provider that lends its session (Vault) has it passed in at configure: the child uses the
 * long-lived process's token instead of logging in, so a lease it issues belongs to the token
 * that process keeps alive. An issue never runs without it; a fetch of static values does (the
 * child then authenticates itself) when the long-lived process cannot lend one.
 */
import { describeError } from "../errors.ts";
import type { ConnectionOptions } from "./provider-connection.ts";
import { ProviderConnection } from "./provider-connection.ts";
import type { IssueParams, LeaseInfo, ParamsOf, ResultOf, SecretRef } from "./protocol.ts";
import type { FetchedItem } from "./wire-values.ts";

interface Serving {
  connection: ProviderConnection;
  ready: Promise<void>;
  calls: number;
  /** Configured with a borrowed session. */
  borrowed: boolean;
}

/** The long-lived process's session, asked for each time a child is needed (it may have logged in again since). */
export type SessionLender = (signal?: AbortSignal) => Promise<Record<string, string>>;

export class FetchChild {
  private serving?: Serving;

  /** `connection`: the long-lived process's options, minus its output reader and owner hooks. */
  constructor(
    private readonly connection: Omit<ConnectionOptions, "ownedOutput" | "onAnswer" | "onFailed" | "onLost">,
    private readonly onLost: () => void,
    private readonly lender?: SessionLender,
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
    const session = this.lender && !this.servingBorrowed() ? await this.borrow(method, signal) : undefined;
    const serving = this.join(session);
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

  private servingBorrowed(): boolean {
    return this.serving?.connection.open === true && this.serving.borrowed;
  }

  /** The lent session; for a fetch, undefined when there is none (the child logs in itself). */
  private async borrow(method: "fetch" | "issue", signal?: AbortSignal): Promise<Record<string, string> | undefined> {
    try {
      return await this.lender!(signal);
    } catch (error) {
      if (method === "issue") throw error;
      this.connection.log.warn("the provider process lent no session; this fetch process authenticates itself", { error: describeError(error) });
      return undefined;
    }
  }

  /** Join the running child, unless this call has a session and that child has none (it must not issue). */
  private join(session: Record<string, string> | undefined): Serving {
    if (this.serving?.connection.open && (this.serving.borrowed || session === undefined)) return this.serving;
    const connection = ProviderConnection.open({
      ...this.connection,
      configure: session ? { ...this.connection.configure, session } : this.connection.configure,
      ownedOutput: true,
      onAnswer: () => {},
      onFailed: () => {},
      onLost: () => this.onLost(),
    });
    const serving: Serving = { connection, ready: connection.ready(), calls: 0, borrowed: session !== undefined };
    serving.ready.catch(() => {});
    this.serving = serving;
    return serving;
  }
}
