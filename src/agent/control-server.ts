/**
 * The agent's unix socket: HTTP/JSON under /v1/..., plus the Docker plugin protocol
 * (/Plugin.Activate, /VolumeDriver.*) on the same socket. The socket is created with mode 0600
 * (0660 and the configured group when agent.socket_group is set) inside a directory that is
 * not world-writable; file permissions are the access control.
 *
 * So that each request knows its caller's uid (the audit trail), the public socket is a front
 * (peer-front.ts) that reads the peer's uid from the kernel and pipes the connection to an
 * HTTP server of its own for that uid, on a private socket in a 0700 directory next to the
 * public one; the handler of that server knows the uid because it was made for it.
 */
import type { FieldLogger } from "../log/logger.ts";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Server } from "bun";
import { startPeerFront } from "./peer-front.ts";
import * as v from "valibot";
import { STATUS_BY_CODE, type ApiRequestInfo } from "../api/contract.ts";

export type { ApiRequestInfo };
import { DsoError, describeError } from "../errors.ts";
import { BodyError, readJsonBody } from "../util/json-body.ts";

export type RouteHandler = (body: unknown, url: URL) => Promise<unknown>;

export interface Route {
  method: "GET" | "POST";
  path: string;
  /** Validates the JSON body; omitted for GET. */
  body?: v.GenericSchema;
  handle: RouteHandler;
}

export interface ControlServerOptions {
  socketPath: string;
  group?: string;
  routes: Route[];
  /** Docker plugin protocol routes; undefined = not a plugin route. */
  plugin?: (req: Request) => Promise<Response | undefined>;
  /** Paths answered by a handler that builds its own Response (not JSON): `/metrics`. */
  rawRoutes?: Record<string, (req: Request) => Promise<Response>>;
  /**
   * Called after every /v1 request with its outcome (for the audit trail of changing calls) and
   * the caller's uid from the socket peer (SO_PEERCRED); undefined when it could not be read.
   */
  onRequest?: (info: ApiRequestInfo, callerUid: number | undefined) => void;
  log: Pick<FieldLogger, "warn" | "debug">;
}


const MAX_BODY_BYTES = 64 * 1024;
/** Distinct caller uids that get a server of their own; callers beyond share one without a uid. */
const MAX_CALLER_SERVERS = 32;

export interface ControlServer {
  /** Stops accepting, closes every connection (when `closeActive`) and removes the private sockets. */
  stop(closeActive?: boolean): Promise<void>;
}


export function jsonError(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
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
  if (existsSync(socketPath)) {
    if (!lstatSync(socketPath).isSocket()) throw new DsoError("USAGE", `${socketPath} exists and is not a socket; refusing to replace it`);
    unlinkSync(socketPath);
  }
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
  prepareDirectory(options.socketPath);
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
  const handle = async (req: Request, callerUid: number | undefined): Promise<Response> => {
    // On a unix socket req.url may be a bare path.
    const url = new URL(req.url, "http://dso");
    try {
      const pluginResponse = options.plugin ? await options.plugin(req) : undefined;
      if (pluginResponse) return pluginResponse;
      const raw = options.rawRoutes?.[url.pathname];
      if (raw) return await raw(req);
    } catch (error) {
      return failure(error, url);
    }
    let body: unknown;
    try {
      const route = routes.get(`${req.method} ${url.pathname}`);
      if (!route) {
        if (paths.has(url.pathname)) return jsonError(405, "BAD_REQUEST", `${req.method} is not allowed on ${url.pathname}`);
        return jsonError(404, "BAD_REQUEST", `no such endpoint: ${req.method} ${url.pathname}`);
      }
      body = route.body ? await readJsonBody(req, route.body, MAX_BODY_BYTES) : undefined;
      const response = Response.json(await route.handle(body, url));
      report({ method: req.method, path: url.pathname, status: response.status, ...(body === undefined ? {} : { body }) }, callerUid);
      return response;
    } catch (error) {
      const response = failure(error, url);
      const code = error instanceof DsoError ? error.code : "INTERNAL";
      report({ method: req.method, path: url.pathname, status: response.status, code, ...(body === undefined ? {} : { body }) }, callerUid);
      return response;
    }
  };
  const privateDir = preparePrivateDirectory(options.socketPath);
  const servers = new Map<number | undefined, { path: string; server: Server<undefined> }>();
  /** The internal server for one caller uid, started on first use. */
  const upstreamFor = (uid: number | undefined): string => {
    const key = uid !== undefined && (servers.has(uid) || servers.size < MAX_CALLER_SERVERS) ? uid : undefined;
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
  // umask so the socket is never reachable by others, not even between bind and chmod.
  const previousUmask = process.umask(0o177);
  let front: ReturnType<typeof startPeerFront>;
  try {
    front = startPeerFront({ socketPath: options.socketPath, upstreamFor, log: options.log });
  } finally {
    process.umask(previousUmask);
  }
  if (gid !== undefined) {
    chownSync(options.socketPath, process.getuid?.() ?? 0, gid);
    chmodSync(options.socketPath, 0o660);
  } else {
    chmodSync(options.socketPath, 0o600);
  }
  return {
    async stop(closeActive = false) {
      front.stop(closeActive);
      await Promise.all([...servers.values()].map(({ server }) => server.stop(closeActive)));
      servers.clear();
      rmSync(privateDir, { recursive: true, force: true });
    },
  };
}
