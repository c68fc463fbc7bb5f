/**
 * The agent's unix socket: HTTP/JSON under /v1/..., plus the Docker plugin protocol
 * (/Plugin.Activate, /VolumeDriver.*) on the same socket. The socket is created with mode 0600
 * (0660 and the configured group when agent.socket_group is set) inside a directory that is
 * not world-writable. With agent.socket_group the same API is also served on a second socket,
 * in a directory the group can traverse (0750 <agent uid>:<group>, by default /run/dso/control):
 * the plugin socket's own directory (/run/docker/plugins) sits under /run/docker, 0700 root.
 *
 * The socket's mode decides who connects; each call is then checked against the caller's uid
 * (socket-access.ts): the plugin protocol and routes that place a value are root's (or the
 * agent's own uid's), reads and triggers anyone's who got in. Every call is reported
 * (`onRequest`, the audit trail) with that uid and its outcome; request bodies are capped at
 * MAX_BODY_BYTES on every route.
 *
 * So that each request knows its caller's uid, each public socket is a front (peer-front.ts)
 * that reads the peer's uid from the kernel and pipes the connection to an HTTP server of its
 * own for that uid, on a private socket in a 0700 directory next to the main socket; the handler
 * of that server knows the uid because it was made for it.
 */
import type { FieldLogger } from "../log/logger.ts";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Server } from "bun";
import { startPeerFront } from "./peer-front.ts";
import { acquireSocketLock, type SocketLock } from "./socket-lock.ts";
import * as v from "valibot";
import { STATUS_BY_CODE, type ApiRequestInfo, type RouteAccess } from "../api/contract.ts";

export type { ApiRequestInfo };
import { DsoError, describeError, isErrorCode } from "../errors.ts";
import { BodyError, readCapped, readJsonBody } from "../util/json-body.ts";
import { type CallAccess, isPluginPath, isPrivileged, mayCall, pluginCallSubject, refusalMessage } from "./socket-access.ts";

export type RouteHandler = (body: unknown, url: URL) => Promise<unknown>;

export interface Route {
  method: "GET" | "POST";
  path: string;
  /** Who may call it (socket-access.ts). */
  access: RouteAccess;
  /** Validates the JSON body; omitted for GET. */
  body?: v.GenericSchema;
  handle: RouteHandler;
}

export interface ControlServerOptions {
  socketPath: string;
  group?: string;
  /** With `group`: a second socket serving the same API, in a directory the group can traverse. */
  groupSocketPath?: string;
  /** The uid trusted like root (the agent's own; a rootless dockerd runs as it). Default: this process's. */
  ownUid?: number;
  routes: Route[];
  /** Docker plugin protocol routes; undefined = not a plugin route. */
  plugin?: (req: Request) => Promise<Response | undefined>;
  /** Paths answered by a handler that builds its own Response (not JSON): `/metrics`; `read` access. */
  rawRoutes?: Record<string, (req: Request) => Promise<Response>>;
  /**
   * Called after every request (plugin, /v1, /metrics, refused, unknown) with its outcome, for
   * the audit trail, and the caller's uid from the socket peer (SO_PEERCRED); undefined when it
   * could not be read.
   */
  onRequest?: (info: ApiRequestInfo, callerUid: number | undefined) => void;
  log: Pick<FieldLogger, "warn" | "debug">;
}


/** Every route's request body, plugin routes included: names and a few options, never more. */
export const MAX_BODY_BYTES = 64 * 1024;
/** Distinct caller uids that get a server of their own; callers beyond share one without a uid (root and the agent's uid always get theirs). */
const MAX_CALLER_SERVERS = 32;

export interface ControlServer {
  /** Stops accepting, closes every connection (when `closeActive`) and removes the private sockets. */
  stop(closeActive?: boolean): Promise<void>;
}


/**
 * An error reply. It closes the connection: the request's body may be unread (refused before
 * reading, or past MAX_BODY_BYTES), and a client still streaming one is cut off there instead of
 * the agent reading the rest to keep the connection.
 */
export function jsonError(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status, headers: { connection: "close" } });
}

/**
 * agent.socket_group as a gid: a number as is, a name looked up in /etc/group itself (the
 * distroless image and the plugin rootfs have no getent), then through getent where the host has
 * it (groups only NSS knows, e.g. LDAP).
 */
export function groupId(group: string, groupFile = "/etc/group"): number {
  if (/^\d+$/.test(group)) return Number(group);
  const lines = existsSync(groupFile) ? readFileSync(groupFile, "utf8").split("\n") : [];
  const gid = lines.map((line) => line.split(":")).find((fields) => fields[0] === group)?.[2] ?? nssGroupId(group);
  if (gid === undefined || !/^\d+$/.test(gid)) throw new DsoError("CONFIG_INVALID", `agent.socket_group: group "${group}" is not in ${groupFile} nor known to getent (give its numeric gid)`);
  return Number(gid);
}

/** A group only NSS knows (LDAP, sssd): `getent group`, where the host has it. */
function nssGroupId(group: string): string | undefined {
  const getent = Bun.which("getent");
  if (!getent) return undefined;
  const run = Bun.spawnSync([getent, "group", group], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  return run.exitCode === 0 ? run.stdout.toString().split(":")[2]?.trim() : undefined;
}

function prepareDirectory(socketPath: string): void {
  const dir = dirname(socketPath);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o755 });
  const mode = statSync(dir).mode;
  if (mode & 0o002 && !(mode & 0o1000)) {
    throw new DsoError("USAGE", `socket directory ${dir} is world-writable; choose another --socket path`);
  }
  removeStaleSocket(socketPath);
}

function removeStaleSocket(socketPath: string): void {
  if (!existsSync(socketPath)) return;
  if (!lstatSync(socketPath).isSocket()) throw new DsoError("USAGE", `${socketPath} exists and is not a socket; refusing to replace it`);
  unlinkSync(socketPath);
}

/**
 * The group socket's directory: 0750, owned by the agent's uid and the socket group, so members
 * can reach the socket and nobody else can. Created where missing (its parent traversable, 0755,
 * whatever the umask: under systemd it is 0077); an existing one must be a directory of the
 * agent's own (not a link someone planted).
 */
function prepareGroupDirectory(socketPath: string, gid: number): void {
  const dir = dirname(socketPath);
  const uid = process.getuid?.() ?? 0;
  const parent = dirname(dir);
  if (!existsSync(parent)) {
    mkdirSync(parent, { recursive: true });
    chmodSync(parent, 0o755);
  }
  if (!existsSync(dir)) mkdirSync(dir, { mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid) throw new DsoError("USAGE", `agent.group_socket: ${dir} is not a directory owned by the agent's uid ${uid}; remove it or choose another path`);
  chownSync(dir, uid, gid);
  chmodSync(dir, 0o750);
}

/**
 * The private sockets' directory: next to the public socket, a new random name each start
 * (mkdtemp: 0700, created atomically, so nobody can plant it first), checked to be this
 * process's own. Directories a killed agent left are removed first when they are ours too.
 */
function preparePrivateDirectory(socketPath: string): string {
  const parent = dirname(socketPath);
  const prefix = `.${basename(socketPath)}.callers`;
  const uid = process.getuid?.() ?? 0;
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(prefix)) continue;
    const stale = join(parent, name);
    const st = lstatSync(stale);
    if (st.isDirectory() && st.uid === uid) rmSync(stale, { recursive: true, force: true });
  }
  const dir = mkdtempSync(join(parent, `${prefix}-`));
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) throw new DsoError("INTERNAL", `${dir} is not a private directory of this agent`);
  return dir;
}

export function startControlServer(options: ControlServerOptions): ControlServer {
  // Resolved before anything listens: a bad group leaves no socket behind.
  const gid = options.group ? groupId(options.group) : undefined;
  const ownUid = options.ownUid ?? process.getuid?.() ?? 0;
  prepareDirectory(options.socketPath);
  // The same path as the main socket: that one already has the group's mode.
  const groupSocketPath = gid !== undefined && options.groupSocketPath !== options.socketPath ? options.groupSocketPath : undefined;
  let groupLock: SocketLock | undefined;
  if (groupSocketPath !== undefined && gid !== undefined) {
    prepareGroupDirectory(groupSocketPath, gid);
    // One agent per group socket, as per main socket (agent.ts): a second one would unlink the first one's.
    groupLock = acquireSocketLock(groupSocketPath);
    removeStaleSocket(groupSocketPath);
    const above = dirname(dirname(groupSocketPath));
    if ((statSync(above).mode & 0o001) === 0) options.log.warn("group members cannot traverse the group socket's parent directory (make it 0755)", { directory: above });
  }
  const routes = new Map(options.routes.map((r) => [`${r.method} ${r.path}`, r]));
  const paths = new Set(options.routes.map((r) => r.path));
  const failure = (error: unknown, url: URL): Response => {
    const code = error instanceof DsoError ? error.code : "INTERNAL";
    const status = error instanceof BodyError ? error.status : (STATUS_BY_CODE[code] ?? 500);
    if (status >= 500) options.log.warn("API request failed", { path: url.pathname, error: describeError(error) });
    return jsonError(status, code, describeError(error));
  };
  const report = (info: ApiRequestInfo, callerUid: number | undefined) => {
    try {
      options.onRequest?.(info, callerUid);
    } catch (error) {
      options.log.warn("API request hook failed", { path: info.path, error: describeError(error) });
    }
  };
  /** 403 for a caller whose uid may not make this call; audited. */
  const refuse = (call: { method: string; path: string }, access: CallAccess, callerUid: number | undefined, subject: Partial<ApiRequestInfo> = {}): Response => {
    const message = refusalMessage(call.method, call.path, access, callerUid);
    report({ ...call, ...subject, status: 403, code: "FORBIDDEN", error: message }, callerUid);
    return jsonError(403, "FORBIDDEN", message);
  };
  /** The Docker plugin protocol: dockerd's only; the body read here, capped, whatever the handler does. */
  const handlePlugin = async (req: Request, url: URL, callerUid: number | undefined): Promise<Response | undefined> => {
    const call = { method: req.method, path: url.pathname };
    let text: string;
    try {
      text = await readCapped(req, MAX_BODY_BYTES);
    } catch (error) {
      const response = failure(error, url);
      report({ ...call, status: response.status, code: "BAD_REQUEST", error: describeError(error) }, callerUid);
      return response;
    }
    const subject = pluginCallSubject(text);
    if (!mayCall("dockerd", callerUid, ownUid)) return refuse(call, "dockerd", callerUid, subject);
    const response = await options.plugin!(new Request(url.href, { method: req.method, headers: req.headers, ...(req.method === "GET" || req.method === "HEAD" ? {} : { body: text }) }));
    if (!response) return undefined;
    const err = await pluginErr(response);
    report({ ...call, ...subject, status: response.status, ...(err ? { code: pluginErrCode(err), error: err } : {}) }, callerUid);
    return response;
  };
  const handle = async (req: Request, callerUid: number | undefined): Promise<Response> => {
    // On a unix socket req.url may be a bare path.
    const url = new URL(req.url, "http://dso");
    const call = { method: req.method, path: url.pathname };
    try {
      if (options.plugin && isPluginPath(url.pathname)) {
        const response = await handlePlugin(req, url, callerUid);
        if (response) return response;
      }
      const raw = options.rawRoutes?.[url.pathname];
      if (raw) {
        const response = await raw(req);
        report({ ...call, status: response.status }, callerUid);
        return response;
      }
    } catch (error) {
      const response = failure(error, url);
      report({ ...call, status: response.status, code: error instanceof DsoError ? error.code : "INTERNAL" }, callerUid);
      return response;
    }
    let body: unknown;
    try {
      const route = routes.get(`${req.method} ${url.pathname}`);
      if (!route) {
        const response = paths.has(url.pathname)
          ? jsonError(405, "BAD_REQUEST", `${req.method} is not allowed on ${url.pathname}`)
          : jsonError(404, "BAD_REQUEST", `no such endpoint: ${req.method} ${url.pathname}`);
        report({ ...call, status: response.status, code: "BAD_REQUEST" }, callerUid);
        return response;
      }
      if (!mayCall(route.access, callerUid, ownUid)) return refuse(call, route.access, callerUid);
      body = route.body ? await readJsonBody(req, route.body, MAX_BODY_BYTES) : undefined;
      const response = Response.json(await route.handle(body, url));
      report({ ...call, status: response.status, ...(body === undefined ? {} : { body }) }, callerUid);
      return response;
    } catch (error) {
      const response = failure(error, url);
      const code = error instanceof DsoError ? error.code : "INTERNAL";
      report({ ...call, status: response.status, code, ...(body === undefined ? {} : { body }) }, callerUid);
      return response;
    }
  };
  const privateDir = preparePrivateDirectory(options.socketPath);
  const servers = new Map<number | undefined, { path: string; server: Server<undefined> }>();
  /** The internal server for one caller uid, started on first use. */
  const upstreamFor = (uid: number | undefined): string => {
    const own = uid !== undefined && (servers.has(uid) || servers.size < MAX_CALLER_SERVERS || isPrivileged(uid, ownUid));
    const key = own ? uid : undefined;
    const known = servers.get(key);
    if (known) return known.path;
    const path = join(privateDir, key === undefined ? "unknown.sock" : `uid-${key}.sock`);
    const server = Bun.serve({
      unix: path,
      development: false,
      fetch: (req) => handle(req, key),
      error(error) {
        return jsonError(500, "INTERNAL", describeError(error));
      },
    });
    servers.set(key, { path, server });
    return path;
  };
  const fronts = [listen(options.socketPath, upstreamFor, options.log, gid)];
  if (groupSocketPath !== undefined) fronts.push(listen(groupSocketPath, upstreamFor, options.log, gid));
  return {
    async stop(closeActive = false) {
      for (const front of fronts) front.stop(closeActive);
      await Promise.all([...servers.values()].map(({ server }) => server.stop(closeActive)));
      servers.clear();
      rmSync(privateDir, { recursive: true, force: true });
      groupLock?.release();
    },
  };
}

/** One public socket: 0600, or 0660 with the socket group; never reachable by others, not even between bind and chmod. */
function listen(socketPath: string, upstreamFor: (uid: number | undefined) => string, log: ControlServerOptions["log"], gid: number | undefined): ReturnType<typeof startPeerFront> {
  const previousUmask = process.umask(0o177);
  let front: ReturnType<typeof startPeerFront>;
  try {
    front = startPeerFront({ socketPath, upstreamFor, log });
  } finally {
    process.umask(previousUmask);
  }
  if (gid !== undefined) {
    chownSync(socketPath, process.getuid?.() ?? 0, gid);
    chmodSync(socketPath, 0o660);
  } else {
    chmodSync(socketPath, 0o600);
  }
  return front;
}

/** The Err a plugin reply carries ("" or absent when it succeeded). */
async function pluginErr(response: Response): Promise<string | undefined> {
  const reply = (await response
    .clone()
    .json()
    .catch(() => undefined)) as { Err?: unknown } | undefined;
  return typeof reply?.Err === "string" && reply.Err ? reply.Err : undefined;
}

/** The error code in the driver's Err ("dso: CODE: message"), for the audit outcome. */
function pluginErrCode(err: string): string {
  const code = /^dso: ([A-Z_]+): /.exec(err)?.[1];
  return code && isErrorCode(code) ? code : "DELIVERY_FAILED";
}
