#!/usr/bin/env bun
/**
 * The gcp provider against the local Secret Manager + OAuth token endpoint (a service-account key
 * whose token_uri is the emulator). Run: bun bench/provider-gcp.ts [--dev | --binary PATH]
 * The bench raises config.quota_per_minute so a 1,000-secret poll is not spread over minutes; the
 * default quota (600/min) would check 540 at once and the rest over the next polls.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGcpServer } from "../test/support/gcp-server.ts";
import { diff, measureProvider, printProviderTable, SECRETS } from "./provider-harness.ts";

const server = await startGcpServer();
const dir = await mkdtemp(join(tmpdir(), "dso-bench-gcp-"));
const keyPath = join(dir, "key.json");
await writeFile(keyPath, server.serviceAccountKey(), { mode: 0o600 });
for (let i = 0; i < SECRETS; i++) {
  server.state.addVersion(`bench-s${i}`, JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
}
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `bench-s${i}` }));
const m = await measureProvider(
  {
    configure: { name: "bench", type: "gcp", config: { project: server.project, endpoint: server.url, quota_per_minute: "100000" } },
    env: { PATH: process.env.PATH, GOOGLE_APPLICATION_CREDENTIALS: keyPath },
  },
  "gcp",
  refs,
  () => ({ ...server.state.calls }),
);
await server.stop();
await rm(dir, { recursive: true, force: true });
const c = m.counters;
printProviderTable("gcp", m, [
  [`poll of ${SECRETS}: metadata reads (versions/latest)`, String(diff(c.before, c.afterPoll, "get"))],
  [`poll of ${SECRETS}: value reads (:access)`, String(diff(c.before, c.afterPoll, "access"))],
  ["poll of 5 after that: metadata reads", String(diff(c.afterPoll, c.afterFew, "get"))],
  [`second poll of ${SECRETS}: value reads`, String(diff(c.afterFew, c.afterRepoll, "access"))],
  [`fetch of ${SECRETS}: metadata reads + value reads`, `${diff(c.afterRepoll, c.afterFetch, "get")} + ${diff(c.afterRepoll, c.afterFetch, "access")}`],
  ["OAuth token requests (all processes)", String(diff({}, c.afterFetch, "token"))],
]);
