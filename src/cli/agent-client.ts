/** The CLI side of the control socket: HTTP/JSON over the agent's unix socket. */
import { DEFAULT_SOCKET_PATH, findConfigPath, loadConfig } from "../config/index.ts";
import { DsoError } from "../errors.ts";

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
  const payload = (await response.json().catch(() => undefined)) as { error?: { code: string; message: string } } | undefined;
  if (!response.ok) {
    const message = payload?.error?.message ?? `agent answered HTTP ${response.status}`;
    throw new DsoError(response.status === 404 ? "SECRET_NOT_FOUND" : "BAD_REQUEST", message);
  }
  return payload as T;
}
