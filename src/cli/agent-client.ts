/** The CLI side of the control socket: which socket to call; the calls are the contract's client (src/api/client.ts). */
import { DEFAULT_SOCKET_PATH, findConfigPath, loadConfig } from "../config/index.ts";

export { AGENT_CALL_TIMEOUT_MS, callAgent, callRoute } from "../api/client.ts";

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
