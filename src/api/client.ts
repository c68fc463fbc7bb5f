/**
 * The client side of the control API (contract.ts): HTTP/JSON over the agent's unix socket, each
 * reply checked against its route's schema. The CLI and `dso doctor` call the agent through this.
 */
import { accessSync, constants } from "node:fs";
import * as v from "valibot";
import { ErrorReplySchema, ROUTES, type RouteBody, type RouteName, type RouteReply } from "./contract.ts";
import { DsoError } from "../errors.ts";

export const AGENT_CALL_TIMEOUT_MS = 120_000;

/** An error body from an agent of another version, whose code this dso does not know. */
const ForeignErrorReplySchema = v.object({ error: v.object({ code: v.string(), message: v.string() }) });

/**
 * The first of the agent's sockets this process may connect to (search on each directory, write
 * on the socket: what connect(2) checks), else the first, whose error then names it. A
 * socket_group member cannot reach the plugin socket under /run/docker (0700 root) and gets the
 * group socket; root gets the plugin socket.
 */
export function reachableSocket(candidates: readonly [string, ...string[]]): string {
  for (const path of candidates) {
    try {
      accessSync(path, constants.W_OK);
      return path;
    } catch {
      // Not there, or not for us: try the next one.
    }
  }
  return candidates[0];
}

export interface CallOptions {
  timeoutMs?: number;
}

export async function callAgent<T>(socket: string, method: "GET" | "POST", path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? AGENT_CALL_TIMEOUT_MS;
  let response: Response;
  try {
    response = await fetch(`http://dso${path}`, {
      unix: socket,
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    } as RequestInit);
  } catch (error) {
    const timedOut = (error as Error).name === "TimeoutError";
    throw new DsoError("AGENT_UNREACHABLE", timedOut ? `the DSO agent at ${socket} did not answer within ${timeoutMs / 1000} s` : `cannot reach the DSO agent at ${socket}`, {
      hint: "is 'dso agent' running? use --socket or DSO_SOCKET for another path",
      cause: error,
    });
  }
  const payload: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    // The agent's own error code and message, as it said them.
    const known = v.safeParse(ErrorReplySchema, payload);
    if (known.success) throw new DsoError(known.output.error.code, known.output.error.message);
    const foreign = v.safeParse(ForeignErrorReplySchema, payload);
    if (foreign.success) throw new DsoError("INTERNAL", `${foreign.output.error.code}: ${foreign.output.error.message}`);
    throw new DsoError("INTERNAL", `the agent answered HTTP ${response.status} without an error body`);
  }
  return payload as T;
}

/** Calls one route of the contract; the reply is checked against its schema. */
export async function callRoute<R extends RouteName>(
  socket: string,
  name: R,
  ...rest: RouteBody<R> extends undefined ? [] | [undefined, CallOptions] : [RouteBody<R>] | [RouteBody<R>, CallOptions]
): Promise<RouteReply<R>> {
  const route = ROUTES[name];
  const [body, options] = rest;
  const reply = await callAgent<unknown>(socket, route.method, route.path, body, options);
  const parsed = v.safeParse(route.reply, reply);
  if (!parsed.success) throw new DsoError("INTERNAL", `the agent's reply to ${route.path} does not match this dso's contract; are the CLI and the agent the same version?`);
  return parsed.output as RouteReply<R>;
}
