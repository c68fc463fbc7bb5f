#!/usr/bin/env bun
/** The built-in file provider: 1,000 secrets, one file each, stat-ed (and read only when changed) inside the provider. Run: bun bench/provider-file.ts [--dev | --binary PATH] */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measureProvider, printProviderTable, SECRETS } from "./provider-harness.ts";

const dir = await mkdtemp(join(tmpdir(), "dso-bench-file-"));
for (let i = 0; i < SECRETS; i++) await writeFile(join(dir, `s${i}.json`), JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
const refs = Array.from({ length: SECRETS }, (_, i) => ({ name: `s${i}` }));
const m = await measureProvider({ configure: { name: "bench", type: "file", config: { path: dir } } }, "file", refs, () => ({}));
await rm(dir, { recursive: true, force: true });
printProviderTable("file", m, [["calls per poll", "1 RPC; files stat-ed, read and MAC-ed (HMAC-SHA-256) in the provider only when changed; only MACs leave it"]]);
