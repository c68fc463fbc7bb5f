/** The CLI side of the control socket: which socket to call; the calls are the contract's client (src/api/client.ts). */
import { reachableSocket } from "../api/client.ts";
import { DsoError } from "../errors.ts";
import { DEFAULT_GROUP_SOCKET_PATH, DEFAULT_SOCKET_PATH, findConfigPath, loadConfig } from "../config/index.ts";

export { AGENT_CALL_TIMEOUT_MS, callAgent, callRoute } from "../api/client.ts";

/**
 * --socket, else $DSO_SOCKET, else the first this user can reach of agent.socket and
 * agent.group_socket (from dso.yaml when this user can read it, else their defaults): root gets
 * the plugin socket, a member of agent.socket_group the group socket.
 */
export async function resolveSocketPath(flags: { socket?: string; config?: string }): Promise<string> {
  if (flags.socket) return flags.socket;
  if (process.env.DSO_SOCKET) return process.env.DSO_SOCKET;
  const remote = process.env.DSO_REMOTE_CONTEXT;
  if (remote) {
    throw new DsoError("USAGE", `docker ${remote} is another host's daemon; this command talks to the DSO agent on the host it runs on`, {
      hint: "run it on that host (or give --socket)",
    });
  }
  let agent = { socket: DEFAULT_SOCKET_PATH, groupSocket: DEFAULT_GROUP_SOCKET_PATH };
  try {
    const path = findConfigPath({ flag: flags.config, env: process.env });
    if (path) agent = (await loadConfig(path, process.env)).config.agent;
  } catch {
    // An unreadable config (a group member may not read /etc/dso) does not stop us from trying the defaults.
  }
  return reachableSocket([agent.socket, agent.groupSocket]);
}
