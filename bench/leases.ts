#!/usr/bin/env bun
/**
 * Dynamic credentials at scale, with the real `dso provider vault` processes against the Vault wire
 * server (test/support/vault-server.ts): issue latency (keeper → fetch process → Vault → value in
 * the agent) p50/p95 for one consumer at a time and for 1,000 at once, and renewals per minute
 * for 1,000 leases all due together. Not a timed test. Run: bun bench/leases.ts [count]
 */
import type { LeaseSpec } from "../src/config/lease-spec.ts";
import type { SecretSpec } from "../src/config/types.ts";
import { memoryLeaseBook } from "../src/leases/lease-book.ts";
import { LeaseKeeper } from "../src/leases/lease-keeper.ts";
import { providerLeaseBackend } from "../src/leases/provider-backend.ts";
import { ProviderProcess } from "../src/rpc/supervisor.ts";
import { wipeSecretBytes } from "../src/rpc/wire-values.ts";
import { startVaultServer } from "../test/support/vault-server.ts";

const COUNT = Number(process.argv[2] ?? 1000);
const SEQUENTIAL = 30;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const vault = await startVaultServer({ engines: { database: { type: "database", roles: { app: { defaultTtl: 3600, maxTtl: 7200 } } } } });
const spec: SecretSpec & { lease: LeaseSpec } = {
  name: "db", provider: "vault", inject: { type: "env" }, targets: { containers: [], labels: {}, volumes: [] }, mappings: {},
  rotation: { enabled: true, strategy: "none", signal: "SIGHUP", healthCheckTimeoutMs: 1000 },
  lease: { engine: "database", kind: "creds", role: "app", params: {}, scope: "container", renewAt: 2 / 3, reissueMargin: 0.15, revokeOnRemove: true, revokeGraceMs: 0 },
};
const provider = new ProviderProcess({ configure: { name: "vault", type: "vault", config: { address: vault.url } }, env: { PATH: process.env.PATH, VAULT_TOKEN: vault.state.rootToken } });
let clock = Date.now();
const keeper = new LeaseKeeper({ spec: () => spec, backend: () => providerLeaseBackend(provider), book: memoryLeaseBook(), fingerprint: (k) => k, onReplaceWanted: () => {}, now: () => clock });

try {
  const one: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t0 = performance.now();
    wipeSecretBytes((await keeper.credential("db", `seq-${i}`)).value);
    one.push(performance.now() - t0);
  }
  one.sort((a, b) => a - b);
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: COUNT }, (_, i) => keeper.credential("db", `c-${i}`)));
  const burstMs = performance.now() - t0;
  for (const c of all) wipeSecretBytes(c.value);
  clock += 2_500_000; // past 2/3 of every 1 h lease: all due together
  const before = vault.state.dynamic.calls.renew ?? 0;
  const r0 = performance.now();
  await keeper.tick();
  const renewMs = performance.now() - r0;
  const renewed = (vault.state.dynamic.calls.renew ?? 0) - before;
  console.log(`issue, one consumer at a time (${SEQUENTIAL}): p50 ${pct(one, 50).toFixed(1)} ms, p95 ${pct(one, 95).toFixed(1)} ms (a fetch process per issue)`);
  console.log(`issue, ${COUNT} consumers at once: ${burstMs.toFixed(0)} ms in all (${(burstMs / COUNT).toFixed(2)} ms each; calls join one fetch process)`);
  console.log(`renewal of ${renewed} leases due together: ${renewMs.toFixed(0)} ms → ${Math.round((renewed / renewMs) * 60_000)} renewals per minute`);
} finally {
  await keeper.stop();
  await provider.stop();
  await vault.stop();
}
