/**
 * The agent side of the provider protocol: one ProviderProcess per configured provider
 * instance. Spawned lazily on first call; every call has a timeout; a crash, hang or protocol
 * violation kills the child, fails the calls in flight with a typed error, and the next call
 * restarts it after an exponential backoff with jitter.
 *
 * Values are never fetched by the long-lived process: each `fetch` is served by a short-lived
 * child of its own (calls that arrive while it works join it), which exits as soon as it has
 * answered, so no provider process keeps a value past its fetch. The long-lived child answers
 * fingerprint and health calls only: metadata.
 */
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import * as v from "valibot";
import { DsoError, type ErrorCode } from "../errors.ts";
import { currentLogLevel, log as rootLog } from "../log/logger.ts";
import { registerSecretBytes, registerSecretValue } from "../log/redact.ts";
import type { FieldLogger } from "../log/logger.ts";
import { encodeFrame, LINE_PEER, readFrames, readTextLines, wipeBuffer, type Frame } from "./framing.ts";
import { providerChildEnv, providerCredentials } from "./provider-env.ts";
import {
  describeIssues,
  FRAME_LIMITS,
  HelloSchema,
  PROTOCOL_VERSION,
  ResponseSchema,
  ResultSchemas,
  type ConfigureParams,
  type Method,
  type ParamsOf,
  type ResultOf,
  type RpcError,
  refKey,
  type SecretRef,
} from "./protocol.ts";
import { closeSync } from "node:fs";
import { openPipe } from "../os/libc.ts";
import { ownedPipeStream } from "./owned-pipe.ts";
import { selfCommand } from "./self-command.ts";
import { valuesFromWire, type FetchedItem } from "./wire-values.ts";
import { isMapping } from "../util/is-mapping.ts";

export const START_TIMEOUT_MS = 10_000;
export const CALL_TIMEOUT_MS = 30_000;
export const SHUTDOWN_GRACE_MS = 2_000;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30_000;
/** A provider's stderr line longer than this is dropped; a non-JSON one is cut to the second. */
const STDERR_LINE_BYTES = 64 * 1024;
const STDERR_TEXT_CHARS = 2_000;
/** At most this many of a provider's stderr lines are re-logged per second; the rest are counted. */
export const STDERR_LINES_PER_SECOND = 100;

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

interface Pending {
  method: Method;
  /** `raw` is the frame's raw section (a fetch result's values), owned by the receiver. */
  resolve(result: unknown, raw?: Uint8Array): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A provider's in-band error, as a DsoError carrying the RPC code. */
export class ProviderCallError extends DsoError {
  readonly retryAfterMs?: number;
  constructor(error: RpcError, provider: string) {
    super(error.code as ErrorCode, error.message.startsWith("provider ") ? error.message : `provider ${provider}: ${error.message}`);
    this.retryAfterMs = error.retryAfterMs;
  }
}

/** A pipe for a fetch process's stdout, or undefined (Bun's own pipe then) when libc is not reachable. */
function ownedPipe(log: FieldLogger): { read: number; write: number } | undefined {
  try {
    return openPipe();
  } catch (error) {
    log.debug("reading the fetch process through Bun's pipe (no owned pipe)", { error: describe(error) });
    return undefined;
  }
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

export function backoffDelay(failures: number, random = Math.random, baseMs = BACKOFF_BASE_MS): number {
  const exp = Math.min(BACKOFF_MAX_MS, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp * (0.8 + 0.4 * random()));
}

export class ProviderProcess {
  readonly name: string;
  readonly type: string;
  private readonly options: ProviderProcessOptions;
  private readonly log;
  private child?: Subprocess<"pipe", "pipe", "pipe">;
  private starting?: Promise<void>;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private failures = 0;
  private notBefore = 0;
  private status: ProviderStatus;
  private stopped = false;
  /** The short-lived child serving fetches now, and how many fetch calls it has in flight. */
  private fetcher?: { process: ProviderProcess; calls: number };
  /** Children this supervisor killed (hang, bad frame, closed pipe): their exit still counts as a restart. */
  private readonly killed = new WeakSet<Subprocess>();

  /** `ownedOutput`: the child's stdout is read into buffers we own (fetch processes: values). */
  private readonly ownedOutput: boolean;

  constructor(options: ProviderProcessOptions, internal: { ownedOutput?: boolean } = {}) {
    // Never unkeyed: a provider that fingerprints values refuses to configure without a key. The
    // fetch processes get this same key (they are made from these options), so their
    // fingerprints equal the polls'.
    const fingerprintKey = options.configure.fingerprintKey ?? randomBytes(32).toString("hex");
    this.options = { ...options, configure: { ...options.configure, fingerprintKey } };
    this.ownedOutput = internal.ownedOutput ?? false;
    this.name = this.options.configure.name;
    this.type = this.options.configure.type;
    this.log = options.log ?? rootLog.withTag(options.logTag ?? `provider:${this.name}`);
    this.status = { name: this.name, type: this.type, state: "idle", healthy: false, restarts: 0 };
  }

  getStatus(): ProviderStatus {
    const fetchPid = this.fetcher?.process.child?.pid;
    return { ...this.status, pid: this.child?.pid, ...(fetchPid ? { fetchPid } : {}) };
  }

  async fingerprint(refs: SecretRef[], signal?: AbortSignal) {
    return (await this.call("fingerprint", { refs }, signal)).items;
  }

  /**
   * Values for `refs`, from a short-lived child that exits once no fetch is in flight. The values
   * are views into one buffer the caller owns: it wipes them (wipeSecretBytes) when done.
   */
  async fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchedItem[]> {
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`);
    const fetcher = (this.fetcher ??= {
      process: new ProviderProcess({ ...this.options, logTag: `${this.options.logTag ?? `provider:${this.name}`}:fetch`, log: this.log, backoffBaseMs: 0 }, { ownedOutput: true }),
      calls: 0,
    });
    fetcher.calls++;
    const restartsBefore = fetcher.process.status.restarts;
    try {
      const items = await fetcher.process.fetchHere(refs, signal);
      // Each ref's value replaces its previous one in the redactor: a rotated-out value is let go.
      for (const item of items) for (const bytes of item.value?.values() ?? []) registerSecretBytes(bytes, { owner: `${this.name}/${refKey(item.ref)}` });
      this.tellObserver((o) => o.fetched(items.map((item) => item.error?.code)));
      this.recordSuccess();
      return items;
    } catch (error) {
      // The provider itself failed (not an in-band answer): it is unhealthy until a call succeeds.
      if (!(error instanceof ProviderCallError)) {
        if (this.status.healthy) this.tellObserver((o) => o.health(false, describe(error)));
        this.status.healthy = false;
        this.status.lastError = describe(error);
      }
      throw error;
    } finally {
      this.status.restarts += fetcher.process.status.restarts - restartsBefore;
      if (--fetcher.calls === 0) {
        if (this.fetcher === fetcher) this.fetcher = undefined;
        void fetcher.process.stop();
      }
    }
  }

  /** A fetch answered by this very child (the short-lived fetcher's side of `fetch`). */
  private async fetchHere(refs: SecretRef[], signal?: AbortSignal): Promise<FetchedItem[]> {
    return ((await this.call("fetch", { refs }, signal)) as unknown as { items: FetchedItem[] }).items;
  }

  async health(signal?: AbortSignal) {
    return this.call("health", {}, signal);
  }

  /** Ask the child to exit; kill it if it has not after SHUTDOWN_GRACE_MS. */
  async stop(): Promise<void> {
    this.stopped = true;
    const fetcher = this.fetcher;
    this.fetcher = undefined;
    this.status.state = "stopped";
    const child = this.child;
    if (!child) return void (await fetcher?.process.stop());
    try {
      child.stdin.write(encodeFrame({ id: this.nextId++, method: "shutdown" }));
      void Promise.resolve(child.stdin.end()).catch(() => {});
    } catch {
      // already gone
    }
    const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(SHUTDOWN_GRACE_MS).then(() => false)]);
    if (!exited) child.kill("SIGKILL");
    await Promise.all([child.exited, fetcher?.process.stop()]);
  }

  async call<M extends Method>(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    if (this.stopped) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`);
    const started = performance.now();
    try {
      await this.ensureStarted();
      const result = await this.send(method, params, signal);
      this.tellObserver((o) => o.call({ operation: method, seconds: (performance.now() - started) / 1000 }));
      return result;
    } catch (error) {
      this.tellObserver((o) => o.call({ operation: method, seconds: (performance.now() - started) / 1000, error }));
      throw error;
    }
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

  private send<M extends Method>(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    const child = this.child;
    if (!child) return Promise.reject(new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is not running`));
    const id = this.nextId++;
    const timeoutMs = this.options.callTimeoutMs ?? CALL_TIMEOUT_MS;
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(`${method} timed out after ${timeoutMs} ms`, "PROVIDER_TIMEOUT");
      }, timeoutMs);
      const onAbort = () => {
        const entry = this.pending.get(id);
        if (!entry) return;
        clearTimeout(entry.timer);
        this.pending.delete(id);
        reject(new DsoError("PROVIDER_TIMEOUT", `provider ${this.name}: ${method} cancelled`));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        method,
        timer,
        resolve: (result, raw) => {
          signal?.removeEventListener("abort", onAbort);
          if (method !== "fetch") return resolve(result as ResultOf<M>);
          try {
            const items = valuesFromWire((result as ResultOf<"fetch">).items, raw, this.name);
            resolve({ items } as unknown as ResultOf<M>);
          } catch (error) {
            reject(error as Error);
          }
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      });
      try {
        child.stdin.write(encodeFrame({ id, method, params }));
        // A child that died mid-write rejects the flush later: that is a failure of this
        // provider, never an unhandled rejection in the agent.
        void Promise.resolve(child.stdin.flush()).catch(() => {
          if (this.child === child) this.fail("its stdin is closed", "PROVIDER_UNAVAILABLE");
        });
      } catch {
        this.fail("its stdin is closed", "PROVIDER_UNAVAILABLE");
      }
    });
  }

  private async ensureStarted(): Promise<void> {
    if (this.child && this.status.state === "ready") return;
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async start(): Promise<void> {
    const wait = this.notBefore - Date.now();
    if (wait > 0) {
      this.status.state = "backoff";
      await Bun.sleep(wait);
    }
    this.status.state = "starting";
    const env = this.options.env ?? process.env;
    const command = this.options.command ?? selfCommand(["provider", this.type]);
    // A fetch process's output carries values: read it into buffers we own (owned-pipe.ts).
    const pipe = this.ownedOutput ? ownedPipe(this.log) : undefined;
    let child: Subprocess<"pipe", "pipe", "pipe">;
    try {
      child = Bun.spawn(command, {
        stdin: "pipe",
        stdout: pipe ? pipe.write : "pipe",
        stderr: "pipe",
        env: { ...providerChildEnv(this.type, env), DSO_LOG_FORMAT: "json", DSO_LOG_LEVEL: currentLogLevel() },
      }) as Subprocess<"pipe", "pipe", "pipe">;
    } finally {
      if (pipe) closeSync(pipe.write);
    }
    this.child = child;
    void this.relogStderr(child);
    void child.exited.then((code) => this.onExit(child, code));

    const frames = readFrames(pipe ? ownedPipeStream(pipe.read) : child.stdout, FRAME_LIMITS);
    try {
      await this.readHello(frames);
      void this.readResponses(child, frames);
      this.status.state = "ready";
      const credentials = providerCredentials(this.type, env);
      for (const value of Object.values(credentials)) registerSecretValue(value);
      for (const value of Object.values(this.options.configure.auth?.params ?? {})) registerSecretValue(value);
      if (this.options.configure.fingerprintKey) registerSecretValue(this.options.configure.fingerprintKey);
      await this.send("configure", { ...this.options.configure, credentials });
      this.log.debug("provider ready", { pid: child.pid });
    } catch (error) {
      this.recordFailure(error instanceof Error ? error.message : String(error));
      this.kill(child);
      throw error instanceof DsoError ? error : new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name}: ${String(error)}`);
    }
  }

  private async readHello(frames: AsyncGenerator<Frame>): Promise<void> {
    const startTimeoutMs = this.options.startTimeoutMs ?? START_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DsoError("PROVIDER_TIMEOUT", `provider ${this.name} did not say hello within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
    });
    try {
      const first = await Promise.race([frames.next(), timeout]);
      if (first.done) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} exited before its handshake`);
      if (first.value.ok) wipeBuffer(first.value.raw);
      else if (first.value.reason === LINE_PEER) {
        throw new DsoError("RPC_PROTOCOL", `provider ${this.name} speaks protocol 1, this agent speaks ${PROTOCOL_VERSION}; use one dso binary for both`);
      }
      const parsed = first.value.ok ? v.safeParse(HelloSchema, first.value.value) : undefined;
      if (!parsed?.success) throw new DsoError("RPC_PROTOCOL", `provider ${this.name} sent a bad handshake`);
      if (parsed.output.protocol !== PROTOCOL_VERSION) {
        throw new DsoError(
          "RPC_PROTOCOL",
          `provider ${this.name} speaks protocol ${parsed.output.protocol}, this agent speaks ${PROTOCOL_VERSION}; use one dso binary for both`,
        );
      }
      if (parsed.output.provider !== this.type) {
        throw new DsoError("RPC_PROTOCOL", `provider ${this.name}: expected type ${this.type}, child is ${parsed.output.provider}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private async readResponses(child: Subprocess, frames: AsyncGenerator<Frame>) {
    try {
      for await (const frame of frames) {
        // Values nobody takes (a late answer, a bad frame) are wiped at once.
        let raw = frame.ok ? frame.raw : undefined;
        try {
          if (child !== this.child) return;
          if (!frame.ok) return this.fail(`sent a bad frame (${frame.reason})`, "RPC_PROTOCOL");
          const handled = this.onResponse(frame.value, raw);
          if (handled === "taken") raw = undefined;
          if (handled === "fail") return;
        } finally {
          wipeBuffer(raw);
        }
      }
    } catch {
      if (child === this.child) this.fail("its output stream broke", "RPC_PROTOCOL");
    }
  }

  /** One response: "taken" when its raw section went to a caller, "fail" when the child was failed. */
  private onResponse(value: unknown, raw: Uint8Array | undefined): "taken" | "ignored" | "fail" {
    const parsed = v.safeParse(ResponseSchema, value);
    if (!parsed.success) {
      this.fail(`sent a malformed response (${describeIssues(parsed.issues)})`, "RPC_PROTOCOL");
      return "fail";
    }
    const response = parsed.output;
    if (response.id === null) {
      if ("error" in response) this.log.warn("provider rejected a frame", { code: response.error.code });
      return "ignored";
    }
    const entry = this.pending.get(response.id);
    if (!entry) return "ignored"; // a late answer to a call that was cancelled
    this.pending.delete(response.id);
    clearTimeout(entry.timer);
    if ("error" in response) {
      entry.reject(new ProviderCallError(response.error, this.name));
      return "ignored";
    }
    const result = v.safeParse(ResultSchemas[entry.method], response.result);
    if (!result.success || (raw && entry.method !== "fetch")) {
      entry.reject(new DsoError("RPC_PROTOCOL", `provider ${this.name}: bad ${entry.method} result`));
      this.fail(`sent an invalid ${entry.method} result (${result.success ? "a raw section it may not carry" : describeIssues(result.issues)})`, "RPC_PROTOCOL");
      return "fail";
    }
    this.recordSuccess();
    entry.resolve(result.output, raw);
    return raw ? "taken" : "ignored";
  }

  /**
   * The child's stderr: JSON log lines are re-logged at their level; anything else (a crash
   * stack trace, a library's stray print) is re-logged as a warning, through the redactor.
   */
  private async relogStderr(child: Subprocess<"pipe", "pipe", "pipe">): Promise<void> {
    // A flooding child must not flood the agent's log nor starve its event loop.
    let windowStart = 0;
    let inWindow = 0;
    let dropped = 0;
    const reportDropped = () => {
      if (dropped) this.log.warn("provider wrote too much to stderr; lines dropped", { dropped, limitPerSecond: STDERR_LINES_PER_SECOND });
      dropped = 0;
    };
    for await (const line of readTextLines(child.stderr, STDERR_LINE_BYTES)) {
      if (!line.trim()) continue;
      const now = Date.now();
      if (now - windowStart >= 1000) {
        reportDropped();
        windowStart = now;
        inWindow = 0;
      }
      if (++inWindow > STDERR_LINES_PER_SECOND) {
        dropped++;
        continue;
      }
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        entry = undefined;
      }
      if (!isMapping(entry)) {
        this.log.warn("provider wrote to stderr", { line: line.slice(0, STDERR_TEXT_CHARS) });
        continue;
      }
      const { level, msg, time: _time, ...fields } = entry as { level?: string; msg?: string } & Record<string, unknown>;
      const method = level === "error" ? "error" : level === "warn" ? "warn" : level === "debug" ? "debug" : "info";
      this.log[method](String(msg ?? ""), fields);
    }
    reportDropped();
  }

  private recordSuccess() {
    this.failures = 0;
    if (!this.status.healthy) this.tellObserver((o) => o.health(true));
    this.status.healthy = true;
    this.status.lastError = undefined;
    this.status.lastOkAt = new Date().toISOString();
  }

  private recordFailure(reason: string) {
    this.failures++;
    if (this.status.healthy || this.failures === 1) this.tellObserver((o) => o.health(false, reason));
    this.status.healthy = false;
    this.status.lastError = reason;
    this.notBefore = Date.now() + backoffDelay(this.failures, Math.random, this.options.backoffBaseMs);
  }

  /** Kill the child and fail everything in flight; the next call restarts it after backoff. */
  private fail(reason: string, code: ErrorCode) {
    const child = this.child;
    if (!child) return;
    this.log.warn(`provider ${reason}; restarting`, { code });
    this.recordFailure(reason);
    this.kill(child);
    this.rejectAll(new DsoError(code, `provider ${this.name}: ${reason}`));
  }

  private kill(child: Subprocess) {
    if (this.child === child) {
      this.killed.add(child);
      this.child = undefined;
      this.status.state = "idle";
    }
    child.kill("SIGKILL");
  }

  private rejectAll(error: DsoError) {
    for (const [id, entry] of this.pending) {
      clearTimeout(entry.timer);
      this.pending.delete(id);
      entry.reject(error);
    }
  }

  private onExit(child: Subprocess, code: number | null) {
    const killedByUs = this.killed.has(child);
    if (this.child !== child && !killedByUs) return;
    if (this.child === child) this.child = undefined;
    this.status.restarts++;
    if (!this.stopped) this.tellObserver((o) => o.restarted());
    // fail() or a failed start already logged it, recorded the failure and failed the calls.
    if (killedByUs) return;
    const how = child.signalCode ? `signal ${child.signalCode}` : `code ${code}`;
    if (!this.stopped) {
      this.log.warn(`provider exited (${how})`);
      this.recordFailure(`exited with ${how}`);
      this.status.state = "idle";
    }
    this.rejectAll(new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} exited (${how})`));
  }
}
