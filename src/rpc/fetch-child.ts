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
 *
 * With `keepSpareReady` (the agent's change-event consumer asks) one more child waits, started and
 * configured but holding no value (only the credentials the long-lived process holds too), so a
 * wave does not wait for a child's start: 0.1 s on a quiet machine, 1–2.5 s on a loaded one (issue
 * 23). The next spare starts SPARE_START_DELAY_MS after a fetch, not during the wave's delivery.
 * A provider that lends its session keeps no spare: a waiting child would hold a token the
 * long-lived process may have replaced by the time a fetch comes.
 */
import { describeError, DsoError } from "../errors.ts";
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
  /** The borrowed session it was configured with, if any. */
  session?: Record<string, string>;
  /** Handed a call (a spare until then). */
  taken: boolean;
}

/**
 * The long-lived process's session, asked for each time a child is needed (it may have logged in
 * again since). For a fetch the lender does not wait for a long-lived process that is starting or
 * in backoff: it throws, and the child logs in itself.
 */
export type SessionLender = (purpose: "fetch" | "issue", signal?: AbortSignal) => Promise<Record<string, string>>;

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
    // An issue always asks: its lease must belong to the token the long-lived process keeps alive now.
    const session = this.lender && (method === "issue" || !this.servingBorrowed()) ? await this.borrow(method, signal) : undefined;
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", "the provider process is stopping");
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

  /** Keep one child started and configured, with no value, for the next fetch (not for a provider that lends its session). */
  keepSpareReady(): void {
    if (this.keepSpare || this.lender) return;
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

  private servingBorrowed(): boolean {
    return this.serving?.connection.open === true && this.serving.session !== undefined;
  }

  /** The lent session; for a fetch, undefined when there is none (the child logs in itself). */
  private async borrow(method: "fetch" | "issue", signal?: AbortSignal): Promise<Record<string, string> | undefined> {
    try {
      return await this.lender!(method, signal);
    } catch (error) {
      if (method === "issue") throw error;
      this.connection.log.warn("the provider process lent no session; this fetch process authenticates itself", { error: describeError(error) });
      return undefined;
    }
  }

  /** Join the running child, unless this call has a session and that child has another or none (it must not issue on it). */
  private join(session: Record<string, string> | undefined): Serving {
    const serving = this.serving;
    if (serving?.connection.open && (session === undefined || (serving.session !== undefined && sameSession(serving.session, session)))) return serving;
    // A spare exists only without a lender, so it never lacks a session a call has.
    const spare = this.spare;
    this.spare = undefined;
    this.serving = spare?.connection.open && session === undefined ? spare : this.open(session);
    this.serving.taken = true;
    if (spare && spare !== this.serving) void spare.connection.shutdown();
    this.startSpareIn(SPARE_START_DELAY_MS);
    return this.serving;
  }

  private startSpareIn(ms: number): void {
    if (!this.keepSpare || this.stopped || this.spare || this.spareTimer) return;
    this.spareTimer = setTimeout(() => {
      this.spareTimer = undefined;
      if (this.keepSpare && !this.stopped && !this.spare) this.spare = this.open(undefined);
    }, ms);
  }

  private open(session: Record<string, string> | undefined): Serving {
    let serving: Serving | undefined;
    const connection = ProviderConnection.open({
      ...this.connection,
      configure: session ? { ...this.connection.configure, session } : this.connection.configure,
      ownedOutput: true,
      onAnswer: () => {},
      onFailed: () => {},
      onLost: () => {
        // A spare that died unused never carried a fetch: dropped, the next fetch starts another
        // (never a loop of restarts when the child cannot start).
        if (serving && !serving.taken) {
          if (this.spare === serving) this.spare = undefined;
        } else this.onLost();
      },
    });
    const opened: Serving = { connection, ready: connection.ready(), calls: 0, taken: false, ...(session ? { session } : {}) };
    serving = opened;
    opened.ready.catch(() => {
      if (this.spare === opened) this.spare = undefined;
    });
    return opened;
  }
}

function sameSession(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
