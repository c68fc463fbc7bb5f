/**
 * The agent's unix socket: HTTP/JSON under /v1/..., plus the Docker plugin protocol
 * (/Plugin.Activate, /VolumeDriver.*) on the same socket. The socket is created with mode 0600
 * (0660 and the configured group when agent.socket_group is set) inside a directory that is
 * not world-writable; file permissions are the access control.
 */
import type { FieldLogger } from "../log/logger.ts";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Server } from "bun";
import * as v from "valibot";
import { STATUS_BY_CODE } from "../api/contract.ts";
import { DsoError, describeError } from "../errors.ts";
import { describeIssues } from "../rpc/protocol.ts";

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
  log: Pick<FieldLogger, "warn" | "debug">;
}

const MAX_BODY_BYTES = 64 * 1024;


export function jsonError(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const line = Bun.spawnSync(["getent", "group", group]).stdout.toString().trim();
  const gid = Number(line.split(":")[2]);
  if (!line || Number.isNaN(gid)) throw new DsoError("CONFIG_INVALID", `agent.socket_group: group "${group}" does not exist`);
  return gid;
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

async function readJsonBody(req: Request, schema: v.GenericSchema): Promise<unknown> {
  const length = Number(req.headers.get("content-length") ?? "0");
  if (length > MAX_BODY_BYTES) throw new DsoError("BAD_REQUEST", `request body larger than ${MAX_BODY_BYTES} bytes`);
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw new DsoError("BAD_REQUEST", `request body larger than ${MAX_BODY_BYTES} bytes`);
  let raw: unknown = {};
  if (text.trim()) {
    try {
      raw = JSON.parse(text);
    } catch {
      throw new DsoError("BAD_REQUEST", "request body is not valid JSON");
    }
  }
  const parsed = v.safeParse(schema, raw);
  if (!parsed.success) {
    throw new DsoError("BAD_REQUEST", describeIssues(parsed.issues));
  }
  return parsed.output;
}

export function startControlServer(options: ControlServerOptions): Server<undefined> {
  prepareDirectory(options.socketPath);
  const routes = new Map(options.routes.map((r) => [`${r.method} ${r.path}`, r]));
  const paths = new Set(options.routes.map((r) => r.path));
  // umask so the socket is never reachable by others, not even between bind and chmod.
  const previousUmask = process.umask(0o177);
  let server: Server<undefined>;
  try {
    server = Bun.serve({
      unix: options.socketPath,
      development: false,
      async fetch(req) {
        // On a unix socket req.url may be a bare path.
        const url = new URL(req.url, "http://dso");
        try {
          const pluginResponse = options.plugin ? await options.plugin(req) : undefined;
          if (pluginResponse) return pluginResponse;
          const route = routes.get(`${req.method} ${url.pathname}`);
          if (!route) {
            if (paths.has(url.pathname)) return jsonError(405, "BAD_REQUEST", `${req.method} is not allowed on ${url.pathname}`);
            return jsonError(404, "BAD_REQUEST", `no such endpoint: ${req.method} ${url.pathname}`);
          }
          const body = route.body ? await readJsonBody(req, route.body) : undefined;
          return Response.json(await route.handle(body, url));
        } catch (error) {
          const code = error instanceof DsoError ? error.code : "INTERNAL";
          const status = STATUS_BY_CODE[code] ?? 500;
          if (status >= 500) options.log.warn("API request failed", { path: url.pathname, error: describeError(error) });
          return jsonError(status, code, describeError(error));
        }
      },
      error(error) {
        return jsonError(500, "INTERNAL", describeError(error));
      },
    });
  } finally {
    process.umask(previousUmask);
  }
  if (options.group) {
    chownSync(options.socketPath, process.getuid?.() ?? 0, groupId(options.group));
    chmodSync(options.socketPath, 0o660);
  } else {
    chmodSync(options.socketPath, 0o600);
  }
  return server;
}
