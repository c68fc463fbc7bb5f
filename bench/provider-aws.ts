#!/usr/bin/env bun
/**
 * The aws provider process against the local Secrets Manager emulator: time from spawn to ready
 * (first health() answered), resident memory idle and after polling / fetching 1,000 secrets,
 * and the API calls each costs. By default it compiles a fresh binary into a temp dir (autoload
 * off, as build.ts does) so it measures what ships; --binary PATH uses a built dso; --dev runs
 * `bun src/main.ts` instead.
 * Run: bun bench/provider-aws.ts [--dev | --binary dist/dso]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProviderProcess } from "../src/rpc/supervisor.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer } from "../test/support/aws-server.ts";

const ROOT = join(import.meta.dir, "..");
const SECRETS = 1000;
const START_RUNS = 5;
const SETTLE_MS = 200;
const dev = process.argv.includes("--dev");
const binaryFlag = process.argv.indexOf("--binary");

async function compileBinary(): Promise<{ path: string; cleanup(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "dso-bench-aws-"));
  const path = join(dir, "dso");
  const result = await Bun.build({
    entrypoints: [join(ROOT, "src/main.ts")],
    compile: { outfile: path, autoloadBunfig: false, autoloadDotenv: false, autoloadTsconfig: false, autoloadPackageJson: false },
    minify: true,
  });
  if (!result.success) throw new Error(`compile failed: ${result.logs.map(String).join("\n")}`);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function rssMiB(pid: number | undefined): string {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return (kb / 1024).toFixed(1);
}

const binary = dev ? undefined : binaryFlag > 0 && process.argv[binaryFlag + 1] ? { path: process.argv[binaryFlag + 1]!, cleanup() {} } : await compileBinary();
const server = await startAwsServer();
for (let i = 0; i < SECRETS; i++) {
  server.state.putSecret(`bench/s${String(i).padStart(4, "0")}`, JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
}
const refs = [...server.state.secrets.keys()].map((name) => ({ name }));

function spawnProvider() {
  return new ProviderProcess({
    configure: { name: "bench", type: "aws", region: "us-east-1", config: { endpoint: server.url } },
    env: { PATH: process.env.PATH, AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "bench-secret-key" },
    ...(binary ? { command: [binary.path, "provider", "aws"] } : {}),
  });
}

const snapshot = () => ({ ...server.state.calls });
const diff = (a: Record<string, number>, b: Record<string, number>, op: string) => (b[op] ?? 0) - (a[op] ?? 0);
const calls = (a: Record<string, number>, b: Record<string, number>) =>
  ["ListSecrets", "DescribeSecret", "BatchGetSecretValue", "GetSecretValue"].map((op) => `${op} ${diff(a, b, op)}`).join(", ");

const startTimes: number[] = [];
for (let i = 0; i < START_RUNS; i++) {
  const p = spawnProvider();
  const t0 = performance.now();
  const health = await p.health();
  if (!health.ok) throw new Error(`provider not healthy: ${health.message}`);
  startTimes.push(performance.now() - t0);
  await p.stop();
}
startTimes.sort((a, b) => a - b);

const p = spawnProvider();
await p.health();
await Bun.sleep(SETTLE_MS);
const pid = p.getStatus().pid;
const idle = rssMiB(pid);

const beforePoll = snapshot();
let t0 = performance.now();
await p.fingerprint(refs);
const pollMs = performance.now() - t0;
const afterPoll = snapshot();
const rssPoll = rssMiB(pid);

t0 = performance.now();
await p.fingerprint(refs.slice(0, 5));
const fewMs = performance.now() - t0;
const afterFew = snapshot();

t0 = performance.now();
await p.fetch(refs);
const fetchMs = performance.now() - t0;
const afterFetch = snapshot();
const rssFetch = rssMiB(pid);
await p.stop();
await server.stop();
binary?.cleanup();

const rows = [
  ["measure", "value"],
  ["process", binary ? "compiled dso provider aws" : "bun src/main.ts provider aws"],
  [`spawn → ready (first health), median of ${START_RUNS}`, `${startTimes[Math.floor(START_RUNS / 2)]!.toFixed(0)} ms`],
  ["RSS idle", `${idle} MiB`],
  [`RSS after polling ${SECRETS} secrets`, `${rssPoll} MiB`],
  [`RSS after fetching ${SECRETS} secrets`, `${rssFetch} MiB`],
  [`poll of ${SECRETS}: wall time`, `${pollMs.toFixed(0)} ms`],
  [`poll of ${SECRETS}: calls`, calls(beforePoll, afterPoll)],
  ["poll of 5 after that (name filter)", `${calls(afterPoll, afterFew)} (${fewMs.toFixed(0)} ms)`],
  [`fetch of ${SECRETS}: wall time`, `${fetchMs.toFixed(0)} ms`],
  [`fetch of ${SECRETS}: calls`, calls(afterFew, afterFetch)],
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
