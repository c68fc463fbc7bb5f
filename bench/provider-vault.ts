#!/usr/bin/env bun
/** The vault provider against the local Vault emulator (KV v2). Run: bun bench/provider-vault.ts [--dev | --binary PATH] */
import { diff, measureProvider, printProviderTable, SECRETS } from "./provider-harness.ts";
import { startVaultServer } from "../test/support/vault-server.ts";

const vault = await startVaultServer();
for (let i = 0; i < SECRETS; i++) vault.state.writeSecret(`secret/bench/s${i}`, { username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` });
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `bench/s${i}` }));
const m = await measureProvider(
  { configure: { name: "bench", type: "vault", config: {} }, env: { PATH: process.env.PATH, VAULT_ADDR: vault.url, VAULT_TOKEN: vault.state.rootToken } },
  "vault",
  refs,
  () => ({ ...vault.state.calls }),
);
await vault.stop();
const c = m.counters;
printProviderTable("vault", m, [
  [`poll of ${SECRETS}: metadata reads`, String(diff(c.before, c.afterPoll, "metadata"))],
  [`poll of ${SECRETS}: data reads`, String(diff(c.before, c.afterPoll, "data"))],
  [`fetch of ${SECRETS}: data reads`, String(diff(c.afterRepoll, c.afterFetch, "data"))],
]);
