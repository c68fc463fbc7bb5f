#!/usr/bin/env bun
/** The azure provider against the local Key Vault + token emulator over TLS. Run: bun bench/provider-azure.ts [--dev | --binary PATH] */
import { startAzureServer } from "../test/support/azure-server.ts";
import { diff, measureProvider, printProviderTable, SECRETS } from "./provider-harness.ts";

const server = await startAzureServer();
for (let i = 0; i < SECRETS; i++) {
  server.state.setSecret(`bench-s${i}`, JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
}
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `bench_s${i}` }));
const m = await measureProvider(
  {
    configure: {
      name: "bench",
      type: "azure",
      auth: { method: "client_secret", params: { tenant_id: server.tenantId, client_id: server.clientId } },
      config: { vault_url: server.url, authority_host: server.authorityHost, disable_challenge_resource_verification: "true" },
    },
    env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: server.certPath, AZURE_CLIENT_SECRET: server.clientSecret },
  },
  "azure",
  refs,
  () => ({ ...server.state.calls }),
);
await server.stop();
const c = m.counters;
printProviderTable("azure", m, [
  [`poll of ${SECRETS}: vault-list calls`, String(diff(c.before, c.afterPoll, "listSecrets"))],
  [`poll of ${SECRETS}: version-list calls`, String(diff(c.before, c.afterPoll, "listVersions"))],
  [`poll of ${SECRETS}: value reads (getSecret)`, String(diff(c.before, c.afterPoll, "getSecret"))],
  ["poll of 5 after that: version-list calls", String(diff(c.afterPoll, c.afterFew, "listVersions"))],
  [`fetch of ${SECRETS}: value reads`, String(diff(c.afterRepoll, c.afterFetch, "getSecret"))],
]);
