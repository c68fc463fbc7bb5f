/**
 * One started provider child with its RPC channel and stderr relay: the part both the long-lived
 * provider process and the short-lived fetch child are made of. `open` spawns (the pid is known at
 * once), `ready` waits for the handshake and sends `configure` with the credentials; from then on
 * `call` goes over the channel. A broken peer is killed and its calls failed here, once; the owner
 * hears about it (`onFailed`) and about an end it did not ask for (`onLost`), to count and back off.
 */
import { DsoError, type ErrorCode } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { registerSecretValue } from "../log/redact.ts";
import { ChildProcess } from "./child-lifecycle.ts";
import { readFrames } from "./framing.ts";
import { FRAME_LIMITS, type ConfigureParams, type Method, type ParamsOf, type ResultOf } from "./protocol.ts";
import { providerCredentials } from "./provider-env.ts";
import { RpcChannel } from "./rpc-channel.ts";
import { relayStderr } from "./stderr-relay.ts";

export interface ConnectionOptions {
  /** configure params without credentials (they come from `env`), fingerprint key included. */
  configure: Omit<ConfigureParams, "credentials">;
  env: Record<string, string | undefined>;
  command?: string[];
  /** Read stdout into buffers the agent owns: for a child whose answers carry values. */
  ownedOutput: boolean;
  log: FieldLogger;
  callTimeoutMs: number;
  startTimeoutMs: number;
  /** A call was answered well. */
  onAnswer(): void;
  /** The connection was failed (child killed, calls failed) for `reason`. */
  onFailed(reason: string): void;
  /** The child is gone without a shutdown from us: `how` it exited, or undefined when we killed it. */
  onLost(how: string | undefined): void;
}

export class ProviderConnection {
  readonly child: ChildProcess;
  private readonly channel: RpcChannel;
  private readonly frames: ReturnType<typeof readFrames>;
  private state: "open" | "failed" | "shut down" = "open";

  private constructor(private readonly options: ConnectionOptions) {
    const { name, type } = options.configure;
    this.child = ChildProcess.spawn({ type, env: options.env, command: options.command, ownedOutput: options.ownedOutput, log: options.log });
    this.channel = new RpcChannel({
      name,
      type,
      write: (bytes) => this.child.write(bytes),
      flush: (onBroken) => this.child.flush(onBroken),
      callTimeoutMs: options.callTimeoutMs,
      log: options.log,
      onBroken: (reason, code) => this.fail(reason, code),
      onAnswer: options.onAnswer,
    });
    void relayStderr(this.child.stderr, options.log);
    void this.child.exited.then((code) => this.onExit(code));
    this.frames = readFrames(this.child.stdout, FRAME_LIMITS);
  }

  static open(options: ConnectionOptions): ProviderConnection {
    return new ProviderConnection(options);
  }

  get name(): string {
    return this.options.configure.name;
  }

  /** Alive: not failed, not shut down, not exited. */
  get open(): boolean {
    return this.state === "open";
  }

  /** Handshake, then configure with the credentials; on any failure the child is killed. */
  async ready(): Promise<void> {
    try {
      await this.channel.hello(this.frames, this.options.startTimeoutMs);
      void this.channel.listen(this.frames);
      const credentials = providerCredentials(this.options.configure.type, this.options.env);
      for (const value of Object.values(credentials)) registerSecretValue(value);
      for (const value of Object.values(this.options.configure.auth?.params ?? {})) registerSecretValue(value);
      if (this.options.configure.fingerprintKey) registerSecretValue(this.options.configure.fingerprintKey);
      await this.channel.send("configure", { ...this.options.configure, credentials });
      this.options.log.debug("provider ready", { pid: this.child.pid });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (this.state === "open") this.options.onFailed(reason);
      this.kill(new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name}: ${reason}`));
      throw error instanceof DsoError ? error : new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name}: ${String(error)}`);
    }
  }

  call<M extends Method>(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    return this.channel.send(method, params, signal);
  }

  /** Kill the child and fail everything in flight. */
  fail(reason: string, code: ErrorCode): void {
    if (this.state !== "open") return;
    this.options.log.warn(`provider ${reason}; restarting`, { code });
    this.options.onFailed(reason);
    this.kill(new DsoError(code, `provider ${this.name}: ${reason}`));
  }

  /** Ask the child to exit; kill it if it has not after the grace period. */
  async shutdown(): Promise<void> {
    if (this.state === "open") this.state = "shut down";
    this.channel.close(new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} is stopped`));
    await this.child.shutdown(this.channel.takeId());
  }

  private kill(error: DsoError): void {
    this.state = "failed";
    this.child.kill();
    this.channel.close(error);
  }

  private onExit(code: number | null): void {
    if (this.state === "shut down") return;
    if (this.child.wasKilled) return this.options.onLost(undefined);
    const how = this.child.howItExited(code);
    this.state = "failed";
    this.channel.close(new DsoError("PROVIDER_UNAVAILABLE", `provider ${this.name} exited (${how})`));
    this.options.onLost(how);
  }
}
