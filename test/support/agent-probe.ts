/**
 * What fault, scale and bench runs observe of a running agent from the outside, never through
 * its internals: its provider processes (children whose argv has `provider`), RSS and CPU from
 * /proc, its Prometheus metrics, files as a container sees them (/proc/<pid>/root, no exec), and
 * a counting proxy in front of its Docker socket.
 */
import { readdirSync, readFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import type { AgentProcess } from "./agent-process.ts";

const CLOCK_TICKS_PER_S = 100;

/** Child processes of `pid` whose command line contains `provider` (long-lived or per-fetch). */
export function providerPids(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== pid) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (argv.includes("provider")) found.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Resident set size in KiB (0 once the process is gone). */
export function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** User + system CPU seconds used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** A file as the container whose init is `containerPid` sees it, read from the host. */
export function readInside(containerPid: number, path: string): string | undefined {
  try {
    return readFileSync(`/proc/${containerPid}/root${path}`, "utf8");
  } catch {
    return undefined;
  }
}

/** `GET /metrics` on the agent socket, as sample name{labels} → value. */
export async function scrapeMetrics(agent: AgentProcess): Promise<Map<string, number>> {
  const text = await (await fetch("http://dso/metrics", { unix: agent.socket } as RequestInit)).text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Sum of every sample of `name` whose labels contain all of `labels` (e.g. `provider="local"`). */
export function metricSum(samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, value] of samples) {
    const brace = key.indexOf("{");
    if ((brace === -1 ? key : key.slice(0, brace)) !== name) continue;
    if (labels.every((l) => key.includes(l))) sum += value;
  }
  return sum;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * A unix-socket proxy in front of dockerd that counts the HTTP requests passing through it.
 * Streams are piped (backpressure honoured): a busy agent reading a megabyte container list
 * slowly gets every byte.
 */
export function countingProxy(target: string, path: string) {
  const counts = new Map<string, number>();
  let total = 0;
  const sockets = new Set<Socket>();
  // Half-open both ways: dockerode ends its side after an exec's stdin and still reads the reply.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ path: target, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => {
      for (const m of chunk.toString("latin1").matchAll(/(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\/[^ ?]*)[^ ]* HTTP\/1\.1/g)) {
        const key = `${m[1]} ${m[2]!.replace(/\/v1\.\d+/, "").replace(/[0-9a-f]{64}/g, "{id}")}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        total++;
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const ready = new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    host: `unix://${path}`,
    /** Resolves once the proxy listens. */
    ready,
    reset: () => {
      counts.clear();
      total = 0;
    },
    total: () => total,
    counts: () => new Map(counts),
    stop: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
