#!/usr/bin/env bun
/**
 * Soak: 1,000 secrets across two providers (500 in the file provider, 500 in the local Vault
 * emulator, KV v2) polled every 5 s by the compiled agent for N minutes (run as root:
 * bun bench/soak.ts [minutes=10]). 10 labelled containers use 5 file secrets each; every 30 s
 * 5 file and 5 Vault secrets change. Sampled every 15 s: agent and provider process RSS, polls
 * and fingerprint calls per provider, Vault HTTP requests. Printed: the samples, and RSS growth
 * from the first sample after warm-up (1 min) to the end.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAgent } from "../test/support/agent-process.ts";
import { metricSum, providerPids, rssKiB, scrapeMetrics } from "../test/support/agent-probe.ts";
import { ensureDocker, stopDocker } from "../test/support/docker-daemon.ts";
import { removeFleet, startFleet, waitForValue, type FleetMember } from "../test/support/fleet.ts";
import { ensureTestImages } from "../test/support/test-images.ts";
import { startVaultServer } from "../test/support/vault-server.ts";

const MINUTES = Number(process.argv[2] ?? 10);
const PER_PROVIDER = 500;
const CONTAINERS = 10;
const SAMPLE_MS = 15_000;
const CHANGE_MS = 30_000;
const WARMUP_MS = 60_000;
const mib = (kib: number) => (kib / 1024).toFixed(1);

const { docker, host } = await ensureDocker();
await ensureTestImages(docker);
const vault = await startVaultServer();
const dir = await mkdtemp("/tmp/dso-bench-soak-");
await mkdir(join(dir, "secrets"));
for (let i = 0; i < PER_PROVIDER; i++) {
  await writeFile(join(dir, "secrets", `f${i}`), `file-${i}-v0`);
  vault.state.writeSecret(`secret/soak/v${i}`, { password: `vault-${i}-v0` });
}
const secrets = [
  ...Array.from({ length: PER_PROVIDER }, (_, i) => `  - { name: f${i}, provider: files }`),
  ...Array.from({ length: PER_PROVIDER }, (_, i) => `  - { name: soak/v${i}, provider: vault }`),
];
await writeFile(
  join(dir, "dso.yaml"),
  [
    "providers:",
    "  files:",
    "    type: file",
    `    config: { path: ${join(dir, "secrets")} }`,
    "  vault:",
    "    type: vault",
    `    config: { address: ${vault.url}, mount: secret }`,
    "agent:",
    "  metrics: { enabled: true }",
    "  watch: { polling_interval: 5s }",
    "secrets:",
    ...secrets,
    "",
  ].join("\n"),
);
const agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: host, env: { VAULT_TOKEN: vault.state.rootToken } });
let fleet: FleetMember[] = [];
type PerProvider = { files: number; vault: number };
type Sample = { at: number; agent: number; providers: number[]; polls: PerProvider; fingerprints: PerProvider; vaultRequests: number };
const samples: Sample[] = [];
try {
  fleet = [];
  for (let c = 0; c < CONTAINERS; c++) {
    const names = Array.from({ length: 5 }, (_, k) => `f${c * 5 + k}`).join(",");
    fleet.push(...(await startFleet(docker, 1, { prefix: `soak${c}`, labels: { "dso.reloader": "true", "dso.secrets": names, "dso.update.strategy": "none" } })));
  }
  const first = await waitForValue(fleet.slice(0, 1), "/run/secrets/f0", "file-0-v0", { startedAt: performance.now(), timeoutMs: 60_000 });
  if (first.missing) throw new Error("the first container never got f0");
  const t0 = performance.now();
  const end = t0 + MINUTES * 60_000;
  let nextChange = t0 + CHANGE_MS;
  let nextSample = t0;
  let round = 0;
  let changeMisses = 0;
  while (performance.now() < end) {
    const now = performance.now();
    if (now >= nextSample) {
      const m = await scrapeMetrics(agent);
      const per = (metric: string, extra: string[] = []): PerProvider => ({
        files: metricSum(m, metric, 'provider="files"', ...extra),
        vault: metricSum(m, metric, 'provider="vault"', ...extra),
      });
      samples.push({
        at: (now - t0) / 1000,
        agent: rssKiB(agent.proc.pid),
        providers: providerPids(agent.proc.pid).map(rssKiB),
        polls: per("dso_provider_polls_total"),
        fingerprints: per("dso_provider_calls_total", ['operation="fingerprint"']),
        vaultRequests: vault.state.calls.requests ?? 0,
      });
      nextSample += SAMPLE_MS;
    }
    if (now >= nextChange) {
      round++;
      for (let k = 0; k < 5; k++) {
        const i = (round * 5 + k) % PER_PROVIDER;
        vault.state.writeSecret(`secret/soak/v${i}`, { password: `vault-${i}-v${round}` });
      }
      // f0..f4 are in the first container: the change must reach it.
      for (let k = 0; k < 5; k++) await writeFile(join(dir, "secrets", `f${k}`), `file-${k}-v${round}`);
      const seen = await waitForValue(fleet.slice(0, 1), "/run/secrets/f4", `file-4-v${round}`, { startedAt: performance.now(), timeoutMs: 20_000 });
      changeMisses += seen.missing;
      nextChange += CHANGE_MS;
    }
    await Bun.sleep(250);
  }
  console.log(`\nSoak: ${PER_PROVIDER * 2} secrets (file ${PER_PROVIDER}, vault ${PER_PROVIDER}), 5 s polling, ${MINUTES} min, ${round} change rounds (missed: ${changeMisses})\n`);
  console.log("| t s | agent RSS MiB | provider RSS MiB | polls files/vault | fingerprint calls files/vault | vault HTTP requests |\n|---|---|---|---|---|---|");
  for (const s of samples) {
    console.log(
      `| ${s.at.toFixed(0)} | ${mib(s.agent)} | ${s.providers.map(mib).join(", ")} | ${s.polls.files}/${s.polls.vault} | ${s.fingerprints.files}/${s.fingerprints.vault} | ${s.vaultRequests} |`,
    );
  }
  const warm = samples.find((s) => s.at * 1000 >= WARMUP_MS) ?? samples[0]!;
  const last = samples.at(-1)!;
  const minutes = (last.at - warm.at) / 60;
  const growth = (a: number, b: number) => `${mib(b - a)} MiB (${(((b - a) / 1024) / Math.max(minutes, 1 / 60)).toFixed(2)} MiB/min)`;
  const polls = last.polls.files - warm.polls.files + last.polls.vault - warm.polls.vault;
  const calls = last.fingerprints.files - warm.fingerprints.files + last.fingerprints.vault - warm.fingerprints.vault;
  console.log(`\nFrom t=${warm.at.toFixed(0)} s to t=${last.at.toFixed(0)} s: agent RSS ${mib(warm.agent)} → ${mib(last.agent)}, growth ${growth(warm.agent, last.agent)}`);
  console.log(`provider RSS ${warm.providers.map(mib).join(", ")} → ${last.providers.map(mib).join(", ")} MiB`);
  console.log(`polls ${polls}, fingerprint calls ${calls} (${(calls / Math.max(polls, 1)).toFixed(2)} per poll: one call per provider per poll by design); vault HTTP requests per vault poll ${((last.vaultRequests - warm.vaultRequests) / Math.max(last.polls.vault - warm.polls.vault, 1)).toFixed(0)}\n`);
} finally {
  await agent.stop("SIGTERM");
  await removeFleet(docker, fleet);
  await vault.stop();
  await rm(dir, { recursive: true, force: true });
  await stopDocker();
}
