/**
 * The provider host: the child side of the protocol, inside `dso provider <type>`. Reads requests
 * from stdin, answers on stdout, logs JSON lines on stderr. A bad frame gets an error reply and
 * the process keeps serving; stdin closing (the agent went away) ends the process. Stdout is the
 * RPC channel, so once the host starts, every other write to it (console.*, a library's print,
 * a write to fd 1) goes to stderr instead, where the agent re-logs it (go-plugin does the same).
 */
import { writeSync } from "node:fs";
import * as v from "valibot";
import { divertStdoutToStderr } from "../src/os/libc.ts";
import { LOG_LEVEL_NAMES, levelEnabled, type LogLevelName } from "../src/log/logger.ts";
import { redact, registerSecretBytes, registerSecretValue } from "../src/log/redact.ts";
import { encodeFrame, readFrames } from "../src/rpc/framing.ts";
import { valuesToWire } from "../src/rpc/wire-values.ts";
import { ProviderError, toRpcError } from "./errors.ts";
import type { ProviderClient, ProviderFactory, ProviderLogger } from "./types.ts";
import {
  describeIssues,
  FRAME_LIMITS,
  PROTOCOL_VERSION,
  RequestSchema,
  type FetchItem,
  type Hello,
  type Request,
  type RpcError,
} from "../src/rpc/protocol.ts";

export interface ProviderIo {
  input: ReadableStream<Uint8Array>;
  write(bytes: Uint8Array): void;
  logLine(line: string): void;
  env: Record<string, string | undefined>;
}

export function jsonLogger(io: Pick<ProviderIo, "logLine">, threshold: LogLevelName = "info"): ProviderLogger {
  const emit = (level: LogLevelName) => (msg: string, fields?: Record<string, unknown>) => {
    if (!levelEnabled(level, threshold)) return;
    io.logLine(redact(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** Values go to the redactor of this process too, so a stray log line cannot carry them. */
function rememberValues(items: FetchItem[]): void {
  for (const item of items) {
    for (const value of Object.values(item.value?.data ?? {})) {
      if (typeof value === "string") registerSecretValue(value);
      else registerSecretBytes(value);
    }
  }
}

/**
 * This process's stdout becomes the protocol's alone: returns the one writer for frames. At the
 * descriptor level, fd 1 becomes a copy of stderr and frames go to a private copy of the old fd 1,
 * so no write to stdout of any kind can reach the channel. Without the C library (no bun:ffi)
 * the JavaScript writers are redirected instead, which leaves direct fd 1 writes unguarded.
 */
export function claimStdout(): (bytes: Uint8Array) => void {
  const toStderr = process.stderr.write.bind(process.stderr);
  const out = process.stdout;
  const frameWrite = out.write.bind(out);
  out.write = ((chunk: unknown, ...rest: unknown[]) => toStderr(chunk as string, ...(rest as []))) as typeof out.write;
  const print = (...args: unknown[]) => void toStderr(`${args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ")}\n`);
  console.log = print;
  console.info = print;
  console.debug = print;
  console.warn = print;
  console.error = print;
  console.trace = print;
  let channel: number;
  try {
    channel = divertStdoutToStderr();
  } catch (error) {
    toStderr(`${JSON.stringify({ time: new Date().toISOString(), level: "warn", msg: "stdout not diverted at fd level; only console.* and process.stdout.write are", error: (error as Error).message })}\n`);
    return (bytes) => void frameWrite(bytes);
  }
  return (bytes) => writeAll(channel, bytes);
}

/** write(2) until every byte is out: a pipe may take a large frame in parts. */
function writeAll(fd: number, bytes: Uint8Array): void {
  for (let offset = 0; offset < bytes.byteLength; ) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
}

/** The `events*` calls, answered by the client's event queue (CONFIG_INVALID when it has none). */
async function answerEvents(client: ProviderClient, request: Extract<Request, { method: "events" | "events_done" | "events_status" }>, signal: AbortSignal): Promise<unknown> {
  const queue = client.events;
  if (!queue) throw new ProviderError("CONFIG_INVALID", "no change-event queue configured (providers.<name>.events)");
  if (request.method === "events") return { messages: await queue.receive(request.params.waitSeconds, signal) };
  if (request.method === "events_done") return (await queue.done(request.params.receipts, signal), {});
  return queue.status(signal);
}

export async function serveProvider(factory: ProviderFactory, io: ProviderIo): Promise<number> {
  const wanted = io.env.DSO_LOG_LEVEL as LogLevelName | undefined;
  const log = jsonLogger(io, wanted && LOG_LEVEL_NAMES.includes(wanted) ? wanted : "info");
  const type = factory.type;
  const hello: Hello = { type: "hello", protocol: PROTOCOL_VERSION, provider: type };
  io.write(encodeFrame(hello));

  let client: ProviderClient | undefined;
  let configuredName = type;
  const inFlight = new Set<AbortController>();
  const reply = (id: number | null, body: { result: unknown } | { error: RpcError }) => io.write(encodeFrame({ id, ...body }));

  async function handle(request: Request): Promise<"continue" | "stop"> {
    const controller = new AbortController();
    inFlight.add(controller);
    try {
      switch (request.method) {
        case "configure": {
          // Credentials and auth parameters must never reach this process's log either.
          for (const value of Object.values(request.params.credentials ?? {})) registerSecretValue(value);
          for (const value of Object.values(request.params.auth?.params ?? {})) registerSecretValue(value);
          for (const value of Object.values(request.params.session ?? {})) registerSecretValue(value);
          if (request.params.fingerprintKey) registerSecretValue(request.params.fingerprintKey);
          await client?.close();
          client = undefined;
          configuredName = request.params.name;
          client = await factory.create(request.params, { log, env: io.env });
          reply(request.id, { result: { ok: true } });
          return "continue";
        }
        case "shutdown":
          await client?.close();
          reply(request.id, { result: {} });
          return "stop";
        default:
          break;
      }
      if (!client) {
        reply(request.id, { error: { code: "RPC_PROTOCOL", message: `${request.method} before configure` } });
        return "continue";
      }
      if (request.method === "fingerprint") {
        reply(request.id, { result: { items: await client.fingerprint(request.params.refs, controller.signal) } });
      } else if (request.method === "fetch") {
        const items = await client.fetch(request.params.refs, controller.signal);
        rememberValues(items);
        // Values go in the frame's raw section, never in its JSON.
        const wire = valuesToWire(items);
        io.write(encodeFrame({ id: request.id, result: { items: wire.items } }, wire.raw));
      } else if (request.method === "issue") {
        if (!client.issue) throw new ProviderError("CONFIG_INVALID", `provider ${configuredName} has no dynamic secrets`);
        const issued = await client.issue(request.params, controller.signal);
        const items = [{ ref: request.params.ref, value: issued.value }];
        rememberValues(items);
        const wire = valuesToWire(items);
        io.write(encodeFrame({ id: request.id, result: { item: wire.items[0], lease: issued.lease } }, wire.raw));
      } else if (request.method === "lease") {
        if (!client.lease) throw new ProviderError("CONFIG_INVALID", `provider ${configuredName} has no dynamic secrets`);
        reply(request.id, { result: await client.lease(request.params, controller.signal) });
      } else if (request.method === "session") {
        if (!client.session) throw new ProviderError("CONFIG_INVALID", `provider ${configuredName} has no session to lend`);
        const session = await client.session(controller.signal);
        for (const value of Object.values(session)) registerSecretValue(value);
        reply(request.id, { result: { session } });
      } else if (request.method === "health") {
        reply(request.id, { result: await client.health(controller.signal) });
      } else {
        reply(request.id, { result: await answerEvents(client, request, controller.signal) });
      }
      return "continue";
    } catch (error) {
      reply(request.id, { error: toRpcError(error, configuredName) });
      return "continue";
    } finally {
      inFlight.delete(controller);
    }
  }

  const pending = new Set<Promise<unknown>>();
  let stopping = false;
  for await (const frame of readFrames(io.input, FRAME_LIMITS)) {
    if (!frame.ok) {
      reply(null, { error: { code: "RPC_PROTOCOL", message: frame.reason } });
      continue;
    }
    if (frame.raw) {
      frame.raw.fill(0);
      const id = typeof (frame.value as { id?: unknown })?.id === "number" ? (frame.value as { id: number }).id : null;
      reply(id, { error: { code: "RPC_PROTOCOL", message: "bad request: requests carry no raw section" } });
      continue;
    }
    const parsed = v.safeParse(RequestSchema, frame.value);
    if (!parsed.success) {
      const id = typeof (frame.value as { id?: unknown })?.id === "number" ? (frame.value as { id: number }).id : null;
      reply(id, { error: { code: "RPC_PROTOCOL", message: `bad request: ${describeIssues(parsed.issues)}` } });
      continue;
    }
    const task = handle(parsed.output).then((next) => {
      if (next === "stop") stopping = true;
    });
    pending.add(task);
    void task.finally(() => pending.delete(task));
    if (parsed.output.method === "shutdown") {
      await task;
      break;
    }
  }
  // stdin closed or shutdown: stop what is running and leave.
  for (const controller of inFlight) controller.abort();
  if (!stopping) await client?.close().catch(() => {});
  return 0;
}
