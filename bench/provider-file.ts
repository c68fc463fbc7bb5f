#!/usr/bin/env bun
/**
 * The built-in file provider process: spawn → ready, RSS idle and after polling / fetching 1,000
 * secrets (one file each, hashed inside the provider). Uses dist/dso when built.
 * Run: bun bench/provider-file.ts [--dev]
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProviderProcess } from "../src/rpc/supervisor.ts";

const DSO = join(import.meta.dir, "../dist/dso");
const SECRETS = 1000;
const START_RUNS = 5;
const compiled = existsSync(DSO) && !process.argv.includes("--dev");

const dir = await mkdtemp(join(tmpdir(), "dso-bench-file-"));
for (let i = 0; i < SECRETS; i++) await writeFile(join(dir, `s${i}.json`), JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `s${i}` }));
const rssMiB = (pid?: number) => (Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024).toFixed(1);
const spawn = () =>
  new ProviderProcess({ configure: { name: "bench", type: "file", config: { path: dir } }, ...(compiled ? { command: [DSO, "provider", "file"] } : {}) });

const starts: number[] = [];
for (let i = 0; i < START_RUNS; i++) {
  const p = spawn();
  const t0 = performance.now();
  await p.health();
  starts.push(performance.now() - t0);
  await p.stop();
}
starts.sort((a, b) => a - b);
const p = spawn();
await p.health();
await Bun.sleep(200);
const pid = p.getStatus().pid;
const idle = rssMiB(pid);
let t0 = performance.now();
await p.fingerprint(refs);
const pollMs = performance.now() - t0;
const rssPoll = rssMiB(pid);
t0 = performance.now();
await p.fetch(refs);
const fetchMs = performance.now() - t0;
const rssFetch = rssMiB(pid);
await p.stop();
await rm(dir, { recursive: true, force: true });

const rows = [
  ["measure", "value"],
  ["process", compiled ? "dist/dso provider file" : "bun src/main.ts provider file"],
  ["spawn → ready (first health), median of 5", `${starts[Math.floor(START_RUNS / 2)]!.toFixed(0)} ms`],
  ["RSS idle", `${idle} MiB`],
  [`RSS after polling ${SECRETS} secrets`, `${rssPoll} MiB`],
  [`RSS after fetching ${SECRETS} secrets`, `${rssFetch} MiB`],
  [`poll of ${SECRETS} (SHA-256 in the provider)`, `${pollMs.toFixed(0)} ms, 1 RPC call`],
  [`fetch of ${SECRETS}`, `${fetchMs.toFixed(0)} ms, 1 RPC call`],
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
