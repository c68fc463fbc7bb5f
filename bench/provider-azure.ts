#!/usr/bin/env bun
/**
 * The azure provider process against the local Key Vault + Entra ID emulator (TLS): time from
 * spawn to ready (first health() answered, which includes the client-credentials token), resident
 * memory idle and after polling / fetching 1,000 secrets, and the Key Vault calls a 1,000-secret
 * poll costs. By default it compiles a fresh binary into a temp dir (same autoload settings as
 * build.ts) so it measures what ships; --binary PATH uses a built dso; --dev runs
 * `bun src/main.ts` instead.
 * Run: bun bench/provider-azure.ts [--dev | --binary dist/dso]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProviderProcess } from "../src/rpc/supervisor.ts";
import { startAzureServer } from "../test/support/azure-server.ts";

const ROOT = join(import.meta.dir, "..");
const SECRETS = 1000;
const START_RUNS = 5;
const dev = process.argv.includes("--dev");
const givenBinary = process.argv[process.argv.indexOf("--binary") + 1];

async function compileBinary(): Promise<{ path: string; cleanup(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "dso-bench-azure-"));
  const path = join(dir, "dso");
  const result = await Bun.build({
    entrypoints: [join(ROOT, "src/main.ts")],
    compile: { outfile: path, autoloadBunfig: false, autoloadDotenv: false, autoloadTsconfig: false, autoloadPackageJson: false },
    minify: true,
    splitting: true,
    format: "esm",
  });
  if (!result.success) throw new Error(`compile failed: ${result.logs.map(String).join("\n")}`);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function rssMiB(pid: number | undefined): string {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return (kb / 1024).toFixed(1);
}

const binary = dev
  ? undefined
  : process.argv.includes("--binary") && givenBinary
    ? { path: givenBinary, cleanup() {} }
    : await compileBinary();
const server = await startAzureServer();
for (let i = 0; i < SECRETS; i++) {
  server.state.setSecret(`bench-s${i}`, JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
}
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `bench_s${i}` }));

function spawnProvider() {
  return new ProviderProcess({
    configure: {
      name: "bench",
      type: "azure",
      auth: { method: "client_secret", params: { tenant_id: server.tenantId, client_id: server.clientId } },
      config: { vault_url: server.url, authority_host: server.authorityHost, disable_challenge_resource_verification: "true" },
    },
    env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: server.certPath, AZURE_CLIENT_SECRET: server.clientSecret },
    ...(binary ? { command: [binary.path, "provider", "azure"] } : {}),
  });
}

const snapshot = () => ({ ...server.state.calls });
const diff = (a: Record<string, number>, b: Record<string, number>, key: string) => (b[key] ?? 0) - (a[key] ?? 0);

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

const beforeSpawn = snapshot();
const p = spawnProvider();
await p.health();
await Bun.sleep(200);
const pid = p.getStatus().pid;
const idle = rssMiB(pid);

const before = snapshot();
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
  ["process", binary ? "compiled dso provider azure" : "bun src/main.ts provider azure"],
  [`spawn → ready (first health, incl. token), median of ${START_RUNS}`, `${startTimes[Math.floor(START_RUNS / 2)]!.toFixed(0)} ms`],
  ["RSS idle", `${idle} MiB`],
  [`RSS after polling ${SECRETS} secrets`, `${rssPoll} MiB`],
  [`RSS after fetching ${SECRETS} secrets`, `${rssFetch} MiB`],
  [`poll of ${SECRETS}: wall time`, `${pollMs.toFixed(0)} ms`],
  [`poll of ${SECRETS}: vault-list calls`, String(diff(before, afterPoll, "listSecrets"))],
  [`poll of ${SECRETS}: version-list calls`, String(diff(before, afterPoll, "listVersions"))],
  [`poll of ${SECRETS}: value reads (getSecret)`, String(diff(before, afterPoll, "getSecret"))],
  ["poll of 5 after that: version-list calls", `${diff(afterPoll, afterFew, "listVersions")} (${fewMs.toFixed(0)} ms)`],
  ["poll of 5 after that: vault-list calls", String(diff(afterPoll, afterFew, "listSecrets"))],
  [`fetch of ${SECRETS}: wall time`, `${fetchMs.toFixed(0)} ms`],
  [`fetch of ${SECRETS}: value reads`, String(diff(afterFew, afterFetch, "getSecret"))],
  ["token requests in the measured process", String(diff(beforeSpawn, afterFetch, "token"))],
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
