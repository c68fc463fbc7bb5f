/**
 * Where Prometheus scrapes: `GET /metrics` on the agent's unix socket (metricsResponse, for the
 * control server) and, when `agent.metrics.listen` is set, a small HTTP listener that serves
 * only that path (loopback by default: metrics carry secret and container names, and have no
 * auth).
 */
import type { Server } from "bun";
import { DsoError } from "../errors.ts";
import type { Metrics } from "./registry.ts";

export const METRICS_PATH = "/metrics";

/** The answer to GET /metrics; anything but GET is 405. */
export async function metricsResponse(metrics: Metrics, req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") return new Response("only GET\n", { status: 405, headers: { allow: "GET" } });
  const body = await metrics.exposition();
  return new Response(req.method === "HEAD" ? null : body, { headers: { "content-type": metrics.contentType } });
}

export interface MetricsListener {
  /** http://host:port/metrics */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Opens `listen` ("127.0.0.1:9464"; port 0 picks a free one). */
export function startMetricsListener(metrics: Metrics, listen: string): MetricsListener {
  const split = listen.lastIndexOf(":");
  const hostname = listen.slice(0, split).replace(/^\[(.*)\]$/, "$1");
  const port = Number(listen.slice(split + 1));
  let server: Server<undefined>;
  try {
    server = Bun.serve({
      hostname,
      port,
      // Bun shares a busy port by default (SO_REUSEPORT); a second agent must not split scrapes.
      reusePort: false,
      development: false,
      fetch(req) {
        const path = new URL(req.url, "http://dso").pathname;
        if (path !== METRICS_PATH) return new Response("not found: scrape /metrics\n", { status: 404 });
        return metricsResponse(metrics, req);
      },
      error() {
        return new Response("internal error\n", { status: 500 });
      },
    });
  } catch (error) {
    throw new DsoError("USAGE", `agent.metrics.listen: cannot listen on ${listen}: ${(error as { code?: string }).code ?? (error as Error).message}`, { cause: error });
  }
  const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${shown}:${server.port}${METRICS_PATH}`,
    port: server.port ?? port,
    stop: () => server.stop(true),
  };
}
