import Dockerode from "dockerode";
import * as v from "valibot";
import { DsoError } from "../errors.ts";
import { negotiateApiVersion } from "./api-version.ts";
import { silenceModemUrlParseWarning } from "./modem-warnings.ts";

export { OUR_MAX_API, OUR_MIN_API, compareApiVersions, negotiateApiVersion } from "./api-version.ts";

/** How long the one GET /version at connect time may take before we call the daemon unreachable. */
export const DOCKER_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_SOCKET_PATH = "/var/run/docker.sock";
/** Docker's registered port for plain-HTTP TCP, used when DOCKER_HOST names none. */
const DEFAULT_TCP_PORT = 2375;

export type Env = Readonly<Record<string, string | undefined>>;

/** Where the daemon is (`host`, as a user would write DOCKER_HOST) and the dockerode options to get there. */
export interface DockerTarget {
  host: string;
  options: Dockerode.DockerOptions;
}

export interface DockerConnection {
  /** A client pinned to `negotiatedApiVersion`: every path is sent as /v1.xx/... */
  docker: Dockerode;
  engineVersion: string;
  serverApiVersion: string;
  minApiVersion: string | undefined;
  negotiatedApiVersion: string;
  host: string;
}

export interface ConnectOptions {
  env?: Env;
  signal?: AbortSignal;
  /** Overrides DOCKER_CONNECT_TIMEOUT_MS (tests). */
  timeoutMs?: number;
}

/**
 * docker-modem merges its own reading of process.env under whatever we pass, so a stray
 * DOCKER_HOST, DOCKER_CERT_PATH or DOCKER_CLIENT_TIMEOUT in our own environment would win over the
 * `env` we were given. Naming every connection field, even as undefined, shuts those defaults out.
 */
const NO_MODEM_DEFAULTS: Dockerode.DockerOptions = {
  socketPath: undefined,
  host: undefined,
  port: undefined,
  protocol: "http",
  ca: undefined,
  cert: undefined,
  key: undefined,
  timeout: undefined,
};

/** Reads DOCKER_HOST (unix:// or tcp://; unset means the local socket) into dockerode options. */
export function dockerOptionsFromEnv(env: Env = process.env): DockerTarget {
  const raw = env.DOCKER_HOST?.trim();
  if (!raw) return unixTarget(DEFAULT_SOCKET_PATH);
  if (raw.startsWith("unix://")) return unixTarget(raw.slice("unix://".length) || DEFAULT_SOCKET_PATH);
  if (raw.startsWith("tcp://")) return tcpTarget(raw, env);
  const scheme = raw.includes("://") ? raw.slice(0, raw.indexOf("://")) : raw;
  throw new DsoError("USAGE", `DOCKER_HOST scheme "${scheme}" is not supported`, {
    hint: "use unix:///path/to/docker.sock or tcp://host:port",
  });
}

function unixTarget(socketPath: string): DockerTarget {
  return { host: `unix://${socketPath}`, options: { ...NO_MODEM_DEFAULTS, socketPath } };
}

function tcpTarget(raw: string, env: Env): DockerTarget {
  silenceModemUrlParseWarning();
  // TLS needs certificate handling we have not built; refusing beats silently sending plain HTTP.
  if (env.DOCKER_TLS_VERIFY && env.DOCKER_TLS_VERIFY !== "0") {
    throw new DsoError("USAGE", "DOCKER_TLS_VERIFY is set, but DSO does not support TLS to Docker yet", {
      hint: "run DSO on the Docker host and use its unix socket",
    });
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DsoError("USAGE", `DOCKER_HOST "${raw}" is not a valid tcp://host:port address`);
  }
  // URL keeps IPv6 literals bracketed; node's http wants the bare address.
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!hostname) throw new DsoError("USAGE", `DOCKER_HOST "${raw}" names no host`);
  const port = url.port ? Number(url.port) : DEFAULT_TCP_PORT;
  return {
    host: `tcp://${url.hostname}:${port}`,
    options: { ...NO_MODEM_DEFAULTS, host: hostname, port, protocol: "http" },
  };
}

const VersionReply = v.object({
  Version: v.string(),
  ApiVersion: v.string(),
  MinAPIVersion: v.optional(v.string()),
});
type VersionReply = v.InferOutput<typeof VersionReply>;
/** dockerode honours `abortSignal` on version() but its type declarations omit it. */
type VersionWithSignal = (opts: { abortSignal: AbortSignal }) => Promise<unknown>;

/**
 * Connects once: asks the daemon for its version and pins the API version for every later call,
 * because an unversioned path means "whatever the daemon defaults to", which changes under us
 * when Docker is upgraded.
 */
export async function connectDocker(opts: ConnectOptions = {}): Promise<DockerConnection> {
  const target = dockerOptionsFromEnv(opts.env);
  const reply = await fetchVersion(target, opts.signal, opts.timeoutMs ?? DOCKER_CONNECT_TIMEOUT_MS);
  const negotiated = negotiateApiVersion(reply);
  return {
    docker: new Dockerode({ ...target.options, version: `v${negotiated}` }),
    engineVersion: reply.Version,
    serverApiVersion: reply.ApiVersion,
    minApiVersion: reply.MinAPIVersion,
    negotiatedApiVersion: negotiated,
    host: target.host,
  };
}

async function fetchVersion(target: DockerTarget, signal: AbortSignal | undefined, timeoutMs: number): Promise<VersionReply> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const abortSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let body: unknown;
  try {
    // /version is served at every API version, so the unpinned client is safe for this one call.
    const probe = new Dockerode(target.options);
    body = await (probe.version as VersionWithSignal).call(probe, { abortSignal });
  } catch (error) {
    const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
    if (typeof statusCode === "number") {
      throw new DsoError("DOCKER_API", `${target.host} answered GET /version with HTTP ${statusCode}; is it a Docker daemon?`, {
        cause: error,
      });
    }
    throw unreachable(target.host, unreachableReason(error, timeout, timeoutMs), error);
  }
  const parsed = v.safeParse(VersionReply, body);
  if (!parsed.success) {
    throw new DsoError("DOCKER_API", `${target.host} answered GET /version without an API version; is it a Docker daemon?`);
  }
  return parsed.output;
}

function unreachable(host: string, reason: string, cause: unknown): DsoError {
  return new DsoError("DOCKER_UNREACHABLE", `cannot reach Docker at ${host}: ${reason}`, {
    hint: "is dockerd running? set DOCKER_HOST",
    cause,
  });
}

const REASON_BY_ERRNO: Record<string, string> = {
  ENOENT: "no socket there",
  ECONNREFUSED: "connection refused",
  EACCES: "permission denied (are you in the docker group?)",
  EPERM: "permission denied (are you in the docker group?)",
  ENOTSOCK: "not a socket",
  ECONNRESET: "connection reset",
  ENOTFOUND: "unknown host",
  EHOSTUNREACH: "host unreachable",
};

/** One short line a user can act on; raw errors from the HTTP layer can span lines or be vague. */
function unreachableReason(error: unknown, timeout: AbortSignal, timeoutMs: number): string {
  if (timeout.aborted) return `no answer within ${timeoutMs / 1000} s`;
  if (error instanceof Error && error.name === "AbortError") return "cancelled";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && REASON_BY_ERRNO[code]) return REASON_BY_ERRNO[code];
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]?.trim() || "unknown error";
}
