/**
 * Who may call what on the agent's sockets (docs/security.md, "Who may call the agent"). The
 * socket's mode decides who can connect at all (root, the agent's own uid, and with
 * agent.socket_group that group's members); this decides, per call, from the caller's uid as the
 * kernel gave it (SO_PEERCRED):
 *
 * - the Docker plugin protocol (/Plugin.*, /VolumeDriver.*) is dockerd's: root, or the agent's
 *   own uid (a rootless dockerd runs as the same user as a rootless agent);
 * - a route that places a value (`place`: /v1/inject) needs the same uids;
 * - `read` and `trigger` routes (status, ls, plan, sync, rotate, metrics) answer every caller
 *   that got in.
 *
 * An unknown uid (not readable, or past the per-uid server limit) counts as a group member.
 */
import type { RouteAccess } from "../api/contract.ts";
import { isMapping } from "../util/is-mapping.ts";

/** What a call needs: a route's access, or "dockerd" for the plugin protocol. */
export type CallAccess = RouteAccess | "dockerd";

/** Volume option names kept for the audit line: enough to see what was asked, bounded. */
const MAX_OPTION_NAMES = 32;
const MAX_NAME_LENGTH = 128;

export function isPluginPath(path: string): boolean {
  return path.startsWith("/Plugin.") || path.startsWith("/VolumeDriver.");
}

/** Root, or the uid the agent runs as: trusted like dockerd. */
export function isPrivileged(callerUid: number | undefined, ownUid: number): boolean {
  return callerUid === 0 || (callerUid !== undefined && callerUid === ownUid);
}

export function mayCall(access: CallAccess, callerUid: number | undefined, ownUid: number): boolean {
  if (access === "read" || access === "trigger") return true;
  return isPrivileged(callerUid, ownUid);
}

/** The one-line reason a call is refused: the route, and what it needs. */
export function refusalMessage(method: string, path: string, access: CallAccess, callerUid: number | undefined): string {
  const caller = `caller uid ${callerUid ?? "unknown"}`;
  if (access === "dockerd") return `${method} ${path} is the Docker plugin protocol: only dockerd may call it (root or the agent's own uid; ${caller})`;
  return `${method} ${path} places a value: it needs root or the agent's own uid (${caller})`;
}

/**
 * What a plugin call names, for the audit line: its volume (`Name`) and the names of its options
 * (`Opts`), never an option's value. Anything unparsable names nothing.
 */
export function pluginCallSubject(body: string): { volume?: string; options?: string[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return {};
  }
  if (!isMapping(parsed)) return {};
  const subject: { volume?: string; options?: string[] } = {};
  if (typeof parsed.Name === "string" && parsed.Name) subject.volume = parsed.Name.slice(0, MAX_NAME_LENGTH);
  if (isMapping(parsed.Opts)) subject.options = Object.keys(parsed.Opts).slice(0, MAX_OPTION_NAMES).map((name) => name.slice(0, MAX_NAME_LENGTH));
  return subject;
}
