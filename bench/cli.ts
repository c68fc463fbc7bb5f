#!/usr/bin/env bun
/**
 * Binary size and CLI start time: `dso version` vs `docker --version` (the client a user
 * already runs), 20 runs each after 3 warm-ups, median and p95. Run: bun bench/cli.ts
 */
import { statSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const DSO = join(ROOT, "dist/dso");
const RUNS = 20;
const WARMUP = 3;

function timeCommand(argv: string[]): number[] {
  const times: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const t0 = performance.now();
    const r = Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore" });
    const ms = performance.now() - t0;
    if (!r.success) throw new Error(`${argv.join(" ")} failed`);
    if (i >= WARMUP) times.push(ms);
  }
  return times.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

if (!Bun.spawnSync(["test", "-x", DSO]).success) {
  console.error("dist/dso missing: run `bun run build` first");
  process.exit(1);
}
const size = statSync(DSO).size;
const rows: string[][] = [["command", "median ms", "p95 ms"]];
for (const argv of [[DSO, "version"], [DSO, "--help"], ["docker", "--version"]]) {
  const which = Bun.which(argv[0]!);
  if (!which) continue;
  const t = timeCommand([which, ...argv.slice(1)]);
  rows.push([argv.map((a) => a.replace(ROOT + "/", "")).join(" "), pct(t, 50).toFixed(1), pct(t, 95).toFixed(1)]);
}
console.log(`dist/dso: ${size} bytes (${(size / 1e6).toFixed(1)} MB, ${(size / 2 ** 20).toFixed(1)} MiB)\n`);
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
