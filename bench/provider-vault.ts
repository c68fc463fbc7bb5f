#!/usr/bin/env bun
/**
 * The vault provider process against the local Vault emulator: time from spawn to ready (first
 * health() answered), resident memory idle and after polling / fetching 1,000 secrets, and the
 * Vault calls one 1,000-secret poll costs. Uses dist/dso when built (as in production), else
 * `bun src/main.ts` (or with --dev). Run: bun bench/provider-vault.ts [--dev]
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ProviderProcess } from "../src/rpc/supervisor.ts";
import { startVaultServer } from "../test/support/vault-server.ts";

const ROOT = join(import.meta.dir, "..");
const DSO = join(ROOT, "dist/dso");
const SECRETS = 1000;
const START_RUNS = 5;

const compiled = existsSync(DSO) && !process.argv.includes("--dev");
const vault = await startVaultServer();
for (let i = 0; i < SECRETS; i++) vault.state.writeSecret(`secret/bench/s${i}`, { username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` });
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `bench/s${i}` }));

function rssMiB(pid: number | undefined): string {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return (kb / 1024).toFixed(1);
}

function spawnProvider() {
  return new ProviderProcess({
    configure: { name: "bench", type: "vault", config: {} },
    env: { PATH: process.env.PATH, VAULT_ADDR: vault.url, VAULT_TOKEN: vault.state.rootToken },
    ...(compiled ? { command: [DSO, "provider", "vault"] } : {}),
  });
}

const calls = () => ({ ...vault.state.calls });
const diff = (a: Record<string, number>, b: Record<string, number>, key: string) => (b[key] ?? 0) - (a[key] ?? 0);

const startTimes: number[] = [];
for (let i = 0; i < START_RUNS; i++) {
  const p = spawnProvider();
  const t0 = performance.now();
  await p.health();
  startTimes.push(performance.now() - t0);
  await p.stop();
}
startTimes.sort((a, b) => a - b);

const p = spawnProvider();
await p.health();
await Bun.sleep(200);
const pid = p.getStatus().pid;
const idle = rssMiB(pid);

const before = calls();
let t0 = performance.now();
await p.fingerprint(refs);
const pollMs = performance.now() - t0;
const afterPoll = calls();
const rssPoll = rssMiB(pid);

t0 = performance.now();
await p.fetch(refs);
const fetchMs = performance.now() - t0;
const afterFetch = calls();
const rssFetch = rssMiB(pid);
await p.stop();
await vault.stop();

const rows = [
  ["measure", "value"],
  ["process", compiled ? "dist/dso provider vault" : "bun src/main.ts provider vault"],
  ["spawn → ready (first health), median of 5", `${startTimes[Math.floor(START_RUNS / 2)]!.toFixed(0)} ms`],
  ["RSS idle", `${idle} MiB`],
  [`RSS after polling ${SECRETS} secrets`, `${rssPoll} MiB`],
  [`RSS after fetching ${SECRETS} secrets`, `${rssFetch} MiB`],
  [`poll of ${SECRETS}: wall time`, `${pollMs.toFixed(0)} ms`],
  [`poll of ${SECRETS}: metadata reads`, String(diff(before, afterPoll, "metadata"))],
  [`poll of ${SECRETS}: data reads`, String(diff(before, afterPoll, "data"))],
  [`fetch of ${SECRETS}: wall time`, `${fetchMs.toFixed(0)} ms`],
  [`fetch of ${SECRETS}: data reads`, String(diff(afterPoll, afterFetch, "data"))],
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
