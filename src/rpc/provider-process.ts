/**
 * The agent side of the provider protocol: one ProviderProcess per configured provider
 * instance (hashicorp/go-plugin's Client). Spawned lazily on first call; every call has a timeout;
 * a crash, hang or protocol violation kills the child, fails the calls in flight with a typed
 * error, and the next call restarts it after an exponential backoff with jitter.
 *
 * It composes the parts split out beside it: child-lifecycle.ts (spawn, kill, shutdown, backoff),
 * rpc-channel.ts (calls and answers), stderr-relay.ts, provider-connection.ts (the three as one
 * started child). Values are never fetched by the long-lived child: each `fetch` is served by a
 * FetchChild (fetch-child.ts), made of the same parts, which exits once it has answered. The
 * long-lived child answers fingerprint and health calls only: metadata.
 */
import { randomBytes } from "node:crypto";
import { DsoError } from "../errors.ts";
import { log as rootLog, type FieldLogger } from "../log/logger.ts";
import { descriptorOf } from "../../providers/registry.ts";
import { registerSecretBytes, registerSecretValue } from "../log/redact.ts";
import { backoffDelay } from "./child-lifecycle.ts";
import { FetchChild, type SessionLender } from "./fetch-child.ts";
import { ProviderConnection, type ConnectionOptions } from "./provider-connection.ts";
import {
  refKey,
  type ConfigureParams,
  type IssueParams,
  type LeaseInfo,
  type LeaseParams,
  type LeaseResult,
  type Method,
  type ParamsOf,
  type ResultOf,
  type SecretRef,
} from "./protocol.ts";
import { ProviderCallError } from "./rpc-channel.ts";
import type { FetchedItem } from "./wire-values.ts";

export const START_TIMEOUT_MS = 10_000;
export const CALL_TIMEOUT_MS = 30_000;

export type ProviderState = "idle" | "starting" | "ready" | "backoff" | "stopped";

export interface ProviderStatus {
  name: string;
  type: string;
  state: ProviderState;
  healthy: boolean;
  pid?: number;
  /** The short-lived child serving a fetch right now, if any. */
  fetchPid?: number;
  restarts: number;
  lastError?: string;
  lastOkAt?: string;
}

export interface ProviderProcessOptions {
  /**
   * configure params without credentials; credentials are added from `env`. Without a
   * `fingerprintKey` (tests, benches) this process makes a random one, kept across child restarts.
   */
  configure: Omit<ConfigureParams, "credentials">;
  env?: Record<string, string | undefined>;
  /** Override how the child is started (tests); default: this binary's `provider <type>`. */
  command?: string[];
  callTimeoutMs?: number;
  startTimeoutMs?: number;
  logTag?: string;
  /** Where the child's log lines and the supervisor's own go (default: the agent's logger). */
  log?: FieldLogger;
  /** First wait before restarting a failed child (`providers.*.retry.backoff`); doubles each time. */
  backoffBaseMs?: number;
  /** Told about every call, restart, health change and fetched value (metrics, notifications); never a value. */
  observer?: ProviderObserver;
}

/** What the supervisor reports to the agent's Observer (`Observer.forProvider(name)` builds one). */
export interface ProviderObserver {
  call(p: { operation: Method; seconds: number; error?: unknown }): void;
  restarted(): void;
  /** Only on a change; `reason` when it became unhealthy. */
  health(healthy: boolean, reason?: string): void;
  /** One entry per secret in a fetch: its error code, or undefined when its value came back. */
  fetched(codes: (string | undefined)[]): void;
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

export class ProviderProcess {
  readonly name: string;
  readonly type: string;
  private readonly options: ProviderProcessOptions;
  private readonly log: FieldLogger;
  private connection?: ProviderConnection;
  private starting?: Promise<void>;
  private failures = 0;
  private notBefore = 0;
  private status: ProviderStatus;
  private stopped = false;
  private readonly fetchChild: FetchChild;

  constructor(options: ProviderProcessOptions) {
    // Never unkeyed: a provider that fingerprints values refuses to configure without a key. The
    // fetch child gets this same key, so its fingerprints equal the polls'.
    const fingerprintKey = options.configure.fingerprintKey ?? randomBytes(32).toString("hex");
    this.options = { ...options, configure: { ...options.configure, fingerprintKey } };
    this.name = this.options.configure.name;
    this.type = this.options.configure.type;
    this.log = options.log ?? rootLog.withTag(options.logTag ?? `provider:${this.name}`);
    this.status = { name: this.name, type: this.type, state: "idle", healthy: false, restarts: 0 };
    // A provider that lends its session (Vault) gives it to each fetch child: no second login.
    this.fetchChild = new FetchChild(this.connectionBasics(this.log), () => this.countRestart(), this.lender());
  }

  getStatus(): ProviderStatus {
    const fetchPid = this.fetchChild.pid;
    return { ...this.status, pid: this.connection?.open ? this.connection.child.pid : undefined, ...(fetchPid ? { fetchPid } : {}) };
  }

  async fingerprint(refs: SecretRef[], signal?: AbortSignal) {
    return (await this.call("fingerprint", { refs }, signal)).items;
  }

  async health(signal?: AbortSignal) {
    return this.call("health", {}, signal);
  }

  /**
   * Values for `refs`, from the short-lived fetch child. The values are views into one buffer the
   * caller owns: it wipes them (wipeSecretBytes) when done.
   */
  async fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchedItem[]> {
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`);
    const started = performance.now();
    try {
      const items = await this.fetchChild.fetch(refs, signal);
      this.tellObserver((o) => o.call({ operation: "fetch", seconds: (performance.now() - started) / 1000 }));
      // Each ref's value replaces its previous one in the redactor: a rotated-out value is let go.
      for (const item of items) for (const bytes of item.value?.values() ?? []) registerSecretBytes(bytes, { owner: `${this.name}/${refKey(item.ref)}` });
      this.tellObserver((o) => o.fetched(items.map((item) => item.error?.code)));
      this.recordSuccess();
      return items;
    } catch (error) {
      this.tellObserver((o) => o.call({ operation: "fetch", seconds: (performance.now() - started) / 1000, error }));
      // The provider itself failed (not an in-band answer): it is unhealthy until a call succeeds.
      if (!(error instanceof ProviderCallError)) {
        if (this.status.healthy) this.tellObserver((o) => o.health(false, describe(error)));
        this.status.healthy = false;
        this.status.lastError = describe(error);
      }
      throw error;
    }
  }

  /**
   * A dynamic credential, from the short-lived fetch child (it carries a value): its bytes are
   * the caller's to wipe. The lease metadata comes with it.
   */
  async issue(params: IssueParams, signal?: AbortSignal): Promise<{ item: FetchedItem; lease: LeaseInfo }> {
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`);
    const issued = await this.fetchChild.issue(params, signal);
    for (const bytes of issued.item.value?.values() ?? []) registerSecretBytes(bytes, { owner: `${this.name}/lease/${issued.lease.leaseId ?? issued.lease.serial ?? refKey(params.ref)}` });
    if (issued.item.error) throw new ProviderCallError(issued.item.error, this.name);
    this.recordSuccess();
    return issued;
  }

  /** From now on keep a spare fetch child ready (no value in it): change events promise a fast change → file. */
  keepSpareFetchReady(): void {
    if (!this.stopped) this.fetchChild.keepSpareReady();
  }

  /** Renew or revoke a lease, or describe the token: metadata, answered by the long-lived child. */
  async lease(params: LeaseParams, signal?: AbortSignal): Promise<LeaseResult> {
    return this.call("lease", params, signal);
  }

  /** Ask the children to exit; kill them if they have not after the grace period. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.status.state = "stopped";
    const connection = this.connection;
    this.connection = undefined;
    await Promise.all([connection?.shutdown(), this.fetchChild.stop()]);
  }

  async call<M extends Method>(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`);
    const started = performance.now();
    try {
      const connection = await this.ensureStarted();
      const result = await connection.call(method, params, signal);
      this.tellObserver((o) => o.call({ operation: method, seconds: (performance.now() - started) / 1000 }));
      return result;
    } catch (error) {
      this.tellObserver((o) => o.call({ operation: method, seconds: (performance.now() - started) / 1000, error }));
      throw error;
    }
  }

  /** The long-lived child's session for a fetch child, asked over the RPC channel each time (never cached here). */
  private lender(): SessionLender | undefined {
    if (!descriptorOf(this.type)?.lendsSession) return undefined;
    return async (purpose, signal) => {
      // A fetch does not wait out a restart's backoff (up to 30 s): it logs in itself instead.
      if (purpose === "fetch" && this.notBefore > Date.now()) {
        throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is restarting after a failure, it has no session to lend now`);
      }
      const { session } = await this.call("session", {}, signal);
      for (const value of Object.values(session)) registerSecretValue(value);
      return session;
    };
  }

  private connectionBasics(log: FieldLogger): Omit<ConnectionOptions, "ownedOutput" | "onAnswer" | "onFailed" | "onLost"> {
    return {
      configure: this.options.configure,
      env: this.options.env ?? process.env,
      command: this.options.command,
      log,
      callTimeoutMs: this.options.callTimeoutMs ?? CALL_TIMEOUT_MS,
      startTimeoutMs: this.options.startTimeoutMs ?? START_TIMEOUT_MS,
    };
  }

  private async ensureStarted(): Promise<ProviderConnection> {
    if (this.connection?.open && this.status.state === "ready") return this.connection;
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    await this.starting;
    if (!this.connection) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is not running`);
    return this.connection;
  }

  private async start(): Promise<void> {
    const wait = this.notBefore - Date.now();
    if (wait > 0) {
      this.status.state = "backoff";
      await Bun.sleep(wait);
    }
    this.status.state = "starting";
    const connection = ProviderConnection.open({
      ...this.connectionBasics(this.log),
      ownedOutput: false,
      onAnswer: () => this.recordSuccess(),
      onFailed: (reason) => this.lose(connection, reason),
      onLost: (how) => this.onLost(connection, how),
    });
    this.connection = connection;
    await connection.ready();
    if (this.connection === connection && !this.stopped) this.status.state = "ready";
  }

  /** The connection was failed: record it (backoff) and forget it; the next call restarts. */
  private lose(connection: ProviderConnection, reason: string): void {
    this.recordFailure(reason);
    if (this.connection !== connection) return;
    this.connection = undefined;
    if (!this.stopped) this.status.state = "idle";
  }

  private onLost(connection: ProviderConnection, how: string | undefined): void {
    this.countRestart();
    // A failed connection was recorded already (lose); an exit on its own is recorded here.
    if (how === undefined || this.stopped) return;
    this.log.warn(`provider exited (${how})`);
    this.lose(connection, `exited with ${how}`);
  }

  private countRestart(): void {
    this.status.restarts++;
    if (!this.stopped) this.tellObserver((o) => o.restarted());
  }

  /** Observing must never break a call. */
  private tellObserver(report: (observer: ProviderObserver) => void): void {
    if (!this.options.observer) return;
    try {
      report(this.options.observer);
    } catch (error) {
      this.log.debug("provider observer failed", { error: (error as Error).message });
    }
  }

  private recordSuccess(): void {
    this.failures = 0;
    if (!this.status.healthy) this.tellObserver((o) => o.health(true));
    this.status.healthy = true;
    this.status.lastError = undefined;
    this.status.lastOkAt = new Date().toISOString();
  }

  private recordFailure(reason: string): void {
    this.failures++;
    if (this.status.healthy || this.failures === 1) this.tellObserver((o) => o.health(false, reason));
    this.status.healthy = false;
    this.status.lastError = reason;
    this.notBefore = Date.now() + backoffDelay(this.failures, Math.random, this.options.backoffBaseMs);
  }
}
