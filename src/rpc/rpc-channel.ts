/**
 * The RPC channel over one child's stdio (hashicorp/go-plugin's client side of the wire): the
 * handshake, numbered calls each with a timeout and an AbortSignal, and the answers read back and
 * checked against the protocol's schemas. A fetch answer's values (the frame's raw section) go to
 * the caller; any other raw bytes are wiped at once. Anything the peer does wrong is reported to
 * `onBroken` once; the owner then kills the child and fails the calls in flight (`close`).
 */
import * as v from "valibot";
import { DsoError, type ErrorCode } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { LINE_PEER, encodeFrame, wipeBuffer, type Frame } from "./framing.ts";
import {
  describeIssues,
  HelloSchema,
  PROTOCOL_VERSION,
  ResponseSchema,
  ResultSchemas,
  type Method,
  type ParamsOf,
  type ResultOf,
  type RpcError,
  VALUE_METHODS,
} from "./protocol.ts";
import { valuesFromWire } from "./wire-values.ts";

/** A provider's in-band error, as a DsoError carrying the RPC code. */
export class ProviderCallError extends DsoError {
  readonly retryAfterMs?: number;
  constructor(error: RpcError, provider: string) {
    super(error.code as ErrorCode, error.message.startsWith("provider ") ? error.message : `provider ${provider}: ${error.message}`);
    this.retryAfterMs = error.retryAfterMs;
  }
}

interface Pending {
  method: Method;
  /** `raw` is the frame's raw section (a fetch result's values), owned by the receiver. */
  resolve(result: unknown, raw?: Uint8Array): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export interface ChannelPeer {
  /** The provider instance's name, for errors. */
  name: string;
  type: string;
  write(bytes: Uint8Array): void;
  /** Push what was written; `onBroken` when the child's stdin turned out closed. */
  flush(onBroken: () => void): void;
  callTimeoutMs: number;
  log: FieldLogger;
  /** The peer broke the protocol, hung or closed its pipe: the owner fails it (once). */
  onBroken(reason: string, code: ErrorCode): void;
  /** A call was answered well. */
  onAnswer(): void;
}

export class RpcChannel {
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly peer: ChannelPeer) {}

  /** A frame id for a message that expects no answer (shutdown). */
  takeId(): number {
    return this.nextId++;
  }

  /** The first frame must be the child's hello, of our protocol and type, within `timeoutMs`. */
  async hello(frames: AsyncGenerator<Frame>, timeoutMs: number): Promise<void> {
    const { name, type } = this.peer;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DsoError("PROVIDER_TIMEOUT", `provider ${name} did not say hello within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const first = await Promise.race([frames.next(), timeout]);
      if (first.done) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${name} exited before its handshake`);
      if (first.value.ok) wipeBuffer(first.value.raw);
      else if (first.value.reason === LINE_PEER) {
        throw new DsoError("RPC_PROTOCOL", `provider ${name} speaks protocol 1, this agent speaks ${PROTOCOL_VERSION}; use one dso binary for both`);
      }
      const parsed = first.value.ok ? v.safeParse(HelloSchema, first.value.value) : undefined;
      if (!parsed?.success) throw new DsoError("RPC_PROTOCOL", `provider ${name} sent a bad handshake`);
      if (parsed.output.protocol !== PROTOCOL_VERSION) {
        throw new DsoError("RPC_PROTOCOL", `provider ${name} speaks protocol ${parsed.output.protocol}, this agent speaks ${PROTOCOL_VERSION}; use one dso binary for both`);
      }
      if (parsed.output.provider !== type) throw new DsoError("RPC_PROTOCOL", `provider ${name}: expected type ${type}, child is ${parsed.output.provider}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Read answers until the stream ends or the channel is closed. */
  async listen(frames: AsyncGenerator<Frame>): Promise<void> {
    try {
      for await (const frame of frames) {
        // Values nobody takes (a late answer, a bad frame) are wiped at once.
        let raw = frame.ok ? frame.raw : undefined;
        try {
          if (this.closed) return;
          if (!frame.ok) return this.peer.onBroken(`sent a bad frame (${frame.reason})`, "RPC_PROTOCOL");
          const handled = this.onResponse(frame.value, raw);
          if (handled === "taken") raw = undefined;
          if (handled === "fail") return;
        } finally {
          wipeBuffer(raw);
        }
      }
    } catch {
      if (!this.closed) this.peer.onBroken("its output stream broke", "RPC_PROTOCOL");
    }
  }

  send<M extends Method>(method: M, params: ParamsOf<M>, signal?: AbortSignal): Promise<ResultOf<M>> {
    const { name } = this.peer;
    if (this.closed) return Promise.reject(new DsoError("PROVIDER_UNAVAILABLE", `provider ${name} is not running`));
    const id = this.nextId++;
    const timeoutMs = this.peer.callTimeoutMs;
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const timer = setTimeout(() => this.peer.onBroken(`${method} timed out after ${timeoutMs} ms`, "PROVIDER_TIMEOUT"), timeoutMs);
      const onAbort = () => {
        const entry = this.pending.get(id);
        if (!entry) return;
        clearTimeout(entry.timer);
        this.pending.delete(id);
        reject(new DsoError("PROVIDER_TIMEOUT", `provider ${name}: ${method} cancelled`));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        method,
        timer,
        resolve: (result, raw) => {
          signal?.removeEventListener("abort", onAbort);
          if (!VALUE_METHODS.has(method)) return resolve(result as ResultOf<M>);
          try {
            if (method === "issue") {
              const issued = result as ResultOf<"issue">;
              return resolve({ ...issued, item: valuesFromWire([issued.item], raw, name)[0] } as unknown as ResultOf<M>);
            }
            resolve({ items: valuesFromWire((result as ResultOf<"fetch">).items, raw, name) } as unknown as ResultOf<M>);
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
        this.peer.write(encodeFrame({ id, method, params }));
        // A child that died mid-write rejects the flush later: that is a failure of this
        // provider, never an unhandled rejection in the agent.
        this.peer.flush(() => {
          if (!this.closed) this.peer.onBroken("its stdin is closed", "PROVIDER_UNAVAILABLE");
        });
      } catch {
        this.peer.onBroken("its stdin is closed", "PROVIDER_UNAVAILABLE");
      }
    });
  }

  /** No more calls; every call in flight fails with `error`. */
  close(error: DsoError): void {
    this.closed = true;
    for (const [id, entry] of this.pending) {
      clearTimeout(entry.timer);
      this.pending.delete(id);
      entry.reject(error);
    }
  }

  /** One response: "taken" when its raw section went to a caller, "fail" when the peer was failed. */
  private onResponse(value: unknown, raw: Uint8Array | undefined): "taken" | "ignored" | "fail" {
    const parsed = v.safeParse(ResponseSchema, value);
    if (!parsed.success) {
      this.peer.onBroken(`sent a malformed response (${describeIssues(parsed.issues)})`, "RPC_PROTOCOL");
      return "fail";
    }
    const response = parsed.output;
    if (response.id === null) {
      if ("error" in response) this.peer.log.warn("provider rejected a frame", { code: response.error.code });
      return "ignored";
    }
    const entry = this.pending.get(response.id);
    if (!entry) return "ignored"; // a late answer to a call that was cancelled
    this.pending.delete(response.id);
    clearTimeout(entry.timer);
    if ("error" in response) {
      entry.reject(new ProviderCallError(response.error, this.peer.name));
      return "ignored";
    }
    const result = v.safeParse(ResultSchemas[entry.method], response.result);
    if (!result.success || (raw && !VALUE_METHODS.has(entry.method))) {
      entry.reject(new DsoError("RPC_PROTOCOL", `provider ${this.peer.name}: bad ${entry.method} result`));
      this.peer.onBroken(`sent an invalid ${entry.method} result (${result.success ? "a raw section it may not carry" : describeIssues(result.issues)})`, "RPC_PROTOCOL");
      return "fail";
    }
    this.peer.onAnswer();
    entry.resolve(result.output, raw);
    return raw ? "taken" : "ignored";
  }
}
