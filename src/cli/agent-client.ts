/** The CLI side of the control socket: HTTP/JSON over the agent's unix socket (src/api/contract.ts). */
import * as v from "valibot";
import { ErrorReplySchema, ROUTES, type RouteBody, type RouteName, type RouteReply } from "../api/contract.ts";
import { DEFAULT_SOCKET_PATH, findConfigPath, loadConfig } from "../config/index.ts";
import { DsoError, type ErrorCode } from "../errors.ts";

const KNOWN_CODES = new Set<string>([
  "USAGE", "CONFIG_NOT_FOUND", "CONFIG_INVALID", "DOCKER_UNREACHABLE", "DOCKER_API", "PROVIDER_UNKNOWN", "PROVIDER_UNAVAILABLE",
  "PROVIDER_TIMEOUT", "PROVIDER_AUTH", "PROVIDER_THROTTLED", "SECRET_NOT_FOUND", "RPC_PROTOCOL", "DELIVERY_REFUSED",
  "DELIVERY_FAILED", "AGENT_UNREACHABLE", "BAD_REQUEST", "INTERNAL",
] satisfies ErrorCode[]);

export const AGENT_CALL_TIMEOUT_MS = 120_000;

/** --socket, else $DSO_SOCKET, else agent.socket from dso.yaml, else the default. */
export async function resolveSocketPath(flags: { socket?: string; config?: string }): Promise<string> {
  if (flags.socket) return flags.socket;
  if (process.env.DSO_SOCKET) return process.env.DSO_SOCKET;
  try {
    const path = findConfigPath({ flag: flags.config, env: process.env });
    if (path) return (await loadConfig(path, process.env)).config.agent.socket;
  } catch {
    // An unreadable config does not stop us from trying the default socket.
  }
  return DEFAULT_SOCKET_PATH;
}

export async function callAgent<T>(socket: string, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`http://dso${path}`, {
      unix: socket,
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(AGENT_CALL_TIMEOUT_MS),
    } as RequestInit);
  } catch {
    throw new DsoError("AGENT_UNREACHABLE", `cannot reach the DSO agent at ${socket}`, {
      hint: "is 'dso agent' running? use --socket or DSO_SOCKET for another path",
    });
  }
  const payload: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    // The agent's own error code and message, as it said them.
    const error = v.safeParse(ErrorReplySchema, payload);
    if (!error.success) throw new DsoError("INTERNAL", `the agent answered HTTP ${response.status} without an error body`);
    const { code, message } = error.output.error;
    throw new DsoError(KNOWN_CODES.has(code) ? (code as ErrorCode) : "INTERNAL", KNOWN_CODES.has(code) ? message : `${code}: ${message}`);
  }
  return payload as T;
}

/** Calls one route of the contract; the reply is checked against its schema. */
export async function callRoute<R extends RouteName>(socket: string, name: R, ...body: RouteBody<R> extends undefined ? [] : [RouteBody<R>]): Promise<RouteReply<R>> {
  const route = ROUTES[name];
  const reply = await callAgent<unknown>(socket, route.method, route.path, body[0]);
  const parsed = v.safeParse(route.reply, reply);
  if (!parsed.success) throw new DsoError("INTERNAL", `the agent's reply to ${route.path} does not match this dso's contract; are the CLI and the agent the same version?`);
  return parsed.output as RouteReply<R>;
}
