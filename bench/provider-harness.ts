/**
 * What every provider bench measures, in one place: spawn → ready (median of START_RUNS), RSS
 * idle, a full poll, a poll of 5, a full fetch, with server counter snapshots around each step.
 * Each bench/provider-<type>.ts only starts its emulator, says how to spawn the provider, and
 * turns the snapshots into rows. Binary: --binary PATH, else dist/dso when built, else --dev
 * (`bun src/main.ts`).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SecretRef } from "../src/rpc/protocol.ts";
import { ProviderProcess, type ProviderProcessOptions } from "../src/rpc/supervisor.ts";

export const SECRETS = 1000;
const START_RUNS = 5;
const SETTLE_MS = 200;

export type Counters = Record<string, number>;

/** The provider binary to measure: what ships (dist/dso) unless told otherwise. */
export function providerCommand(type: string): { command?: string[]; label: string } {
  const flag = process.argv.indexOf("--binary");
  const given = flag > 0 ? process.argv[flag + 1] : undefined;
  const dist = join(import.meta.dir, "../dist/dso");
  const binary = process.argv.includes("--dev") ? undefined : (given ?? (existsSync(dist) ? dist : undefined));
  return binary ? { command: [binary, "provider", type], label: `${binary} provider ${type}` } : { label: `bun src/main.ts provider ${type}` };
}

export function rssMiB(pid: number | undefined): string {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return (kb / 1024).toFixed(1);
}

/** Bytes this process has read through read(2) and friends so far (files and pipes alike). */
export function readBytes(pid: number | undefined): number {
  return Number(/rchar:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1] ?? 0);
}

export interface ProviderMeasurements {
  readyMs: number;
  rssIdle: string;
  rssPoll: string;
  rssFetch: string;
  pollMs: number;
  fewMs: number;
  /** A second full poll, nothing changed in between, and what the provider read for it. */
  repollMs: number;
  repollReadBytes: number;
  fetchMs: number;
  /** Server counters before the poll, after it, after the poll of 5, after the second full poll, after the fetch. */
  counters: { before: Counters; afterPoll: Counters; afterFew: Counters; afterRepoll: Counters; afterFetch: Counters };
}

export async function measureProvider(
  options: Omit<ProviderProcessOptions, "command">,
  type: string,
  refs: SecretRef[],
  counters: () => Counters,
): Promise<ProviderMeasurements> {
  const { command } = providerCommand(type);
  const spawn = () => new ProviderProcess({ ...options, ...(command ? { command } : {}) });
  const starts: number[] = [];
  for (let i = 0; i < START_RUNS; i++) {
    const p = spawn();
    const t0 = performance.now();
    const health = await p.health();
    if (!health.ok) throw new Error(`provider not healthy: ${health.message}`);
    starts.push(performance.now() - t0);
    await p.stop();
  }
  starts.sort((a, b) => a - b);

  const p = spawn();
  await p.health();
  await Bun.sleep(SETTLE_MS);
  const pid = p.getStatus().pid;
  const rssIdle = rssMiB(pid);
  const timed = async (work: () => Promise<unknown>) => {
    const t0 = performance.now();
    await work();
    return performance.now() - t0;
  };
  const before = counters();
  const pollMs = await timed(() => p.fingerprint(refs));
  const afterPoll = counters();
  const rssPoll = rssMiB(pid);
  const fewMs = await timed(() => p.fingerprint(refs.slice(0, 5)));
  const afterFew = counters();
  const read0 = readBytes(pid);
  const repollMs = await timed(() => p.fingerprint(refs));
  const repollReadBytes = readBytes(pid) - read0;
  const afterRepoll = counters();
  const fetchMs = await timed(() => p.fetch(refs));
  const afterFetch = counters();
  const rssFetch = rssMiB(pid);
  await p.stop();
  return {
    readyMs: starts[Math.floor(START_RUNS / 2)]!,
    rssIdle,
    rssPoll,
    rssFetch,
    pollMs,
    fewMs,
    repollMs,
    repollReadBytes,
    fetchMs,
    counters: { before, afterPoll, afterFew, afterRepoll, afterFetch },
  };
}

export const diff = (a: Counters, b: Counters, key: string) => (b[key] ?? 0) - (a[key] ?? 0);

/** The rows every provider shares; `extra` adds its own counters. */
export function printProviderTable(type: string, m: ProviderMeasurements, extra: Array<[string, string]>): void {
  const rows: Array<[string, string]> = [
    ["measure", "value"],
    ["process", providerCommand(type).label],
    ["spawn → ready (first health), median of 5", `${m.readyMs.toFixed(0)} ms`],
    ["RSS idle", `${m.rssIdle} MiB`],
    [`RSS after polling ${SECRETS} secrets`, `${m.rssPoll} MiB`],
    [`RSS after fetching ${SECRETS} secrets`, `${m.rssFetch} MiB`],
    [`poll of ${SECRETS}: wall time`, `${m.pollMs.toFixed(0)} ms`],
    ["poll of 5 after that: wall time", `${m.fewMs.toFixed(0)} ms`],
    [`poll of ${SECRETS} again, nothing changed: wall time`, `${m.repollMs.toFixed(0)} ms`],
    ["  bytes the provider read(2) for it (/proc/<pid>/io rchar)", `${(m.repollReadBytes / 1024).toFixed(0)} KiB`],
    [`fetch of ${SECRETS}: wall time`, `${m.fetchMs.toFixed(0)} ms`],
    ...extra,
  ];
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(`${r[0].padEnd(widths[0]!)}  ${r[1]}`);
}
