#!/usr/bin/env bun
/**
 * What metrics and the audit trail cost, in one run: the events the agent would report for 100
 * containers (a delivery and a rotation each, every poll), driven through an Observer with
 * metrics + audit (to a file) on, and through one with both off; CPU time and RSS growth of
 * each, then the scrape time with 1,000 secrets' staleness gauges (median of 20).
 * Module level: the agent does not call the Observer yet (see docs/performance.md).
 * Run: bun bench/observe.ts
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../src/config/index.ts";
import { Observer } from "../src/observe/observer.ts";

const CONTAINERS = 100;
const POLLS = 100;
const SECRETS_FOR_SCRAPE = 1000;
const SCRAPES = 20;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function drive(observer: Observer): void {
  for (let poll = 0; poll < POLLS; poll++) {
    observer.pollFinished({ provider: "file", secrets: Array.from({ length: CONTAINERS }, (_, i) => `app/secret-${i}`) });
    for (let i = 0; i < CONTAINERS; i++) {
      const container = { id: `${i}`.padStart(64, "c"), name: `app-${i}` };
      const secret = { name: `app/secret-${i}`, version: `v${poll}-0123456789abcdef` };
      observer.deliveryFinished({ container, secrets: [secret], mode: "exec", path: "/run/secrets", trigger: "poll", seconds: 0.02, changedAt: Date.now() - 500 });
      observer.strategyFinished({ container, strategy: "signal", action: "signal SIGHUP", seconds: 0.001 });
      observer.rotationFinished({ container, secret, provider: "file", strategy: "signal", trigger: "poll" });
    }
  }
}

function measure(label: string, observer: Observer): { cpuMs: number; rssMiB: number } {
  Bun.gc(true);
  const rss0 = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  drive(observer);
  const cpu = process.cpuUsage(cpu0);
  Bun.gc(true);
  const result = { cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: (process.memoryUsage().rss - rss0) / 2 ** 20 };
  console.log(`${label.padEnd(24)} ${(CONTAINERS * POLLS * 3).toLocaleString()} events: CPU ${result.cpuMs.toFixed(0)} ms, RSS +${result.rssMiB.toFixed(1)} MiB`);
  return result;
}

const dir = mkdtempSync(join(tmpdir(), "dso-bench-observe-"));
try {
  const off = new Observer(parseConfig("", "dso.yaml", {}).config, { log: quiet, version: "bench" });
  const onConfig = parseConfig(`agent:\n  metrics:\n    enabled: true\n  audit:\n    output: ${join(dir, "audit.log")}\n`, "dso.yaml", {}).config;
  const on = new Observer(onConfig, { log: quiet, version: "bench" });
  measure("metrics + audit off", off);
  const onResult = measure("metrics + audit on", on);
  const auditBytes = statSync(join(dir, "audit.log")).size;
  console.log(`audit file: ${(auditBytes / 2 ** 20).toFixed(1)} MiB, ${(auditBytes / (CONTAINERS * POLLS * 3)).toFixed(0)} bytes per line; ${(onResult.cpuMs * 1000 / (CONTAINERS * POLLS * 3)).toFixed(1)} µs CPU per event`);

  on.metrics!.pollFinished({ provider: "aws", outcome: "ok", secrets: Array.from({ length: SECRETS_FOR_SCRAPE }, (_, i) => `prod/secret-${i}`) });
  const times: number[] = [];
  let size = 0;
  for (let i = 0; i < SCRAPES + 3; i++) {
    const t0 = performance.now();
    const text = await on.metrics!.exposition();
    if (i >= 3) times.push(performance.now() - t0);
    size = text.length;
  }
  times.sort((a, b) => a - b);
  console.log(`scrape with ${SECRETS_FOR_SCRAPE + CONTAINERS} secrets: median ${times[SCRAPES >> 1]!.toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms, ${(size / 1024).toFixed(0)} KiB`);
  await on.stop();
  await off.stop();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
