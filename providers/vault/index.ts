/**
 * The `vault` provider: HashiCorp Vault KV v1/v2 through node-vault, compatible with the Go DSO's
 * vault plugin (config.address, config.token, config.mount, `name?version=N`). Token or AppRole
 * auth with renewal; fingerprints from KV v2 metadata, so polling needs no data access. A fetch
 * process is configured with the long-lived process's token (`session`) and never logs in itself,
 * so every lease it issues belongs to the token the long-lived process renews.
 */
import nodeVault from "node-vault";
import { ProviderError, toRpcError } from "../errors.ts";
import type { FetchItem, FingerprintItem, ProviderClient, ProviderContext, ProviderFactory, SecretRef } from "../types.ts";
import type { ConfigureParams } from "../types.ts";
import { parseVaultSettings, type VaultSettings } from "./config.ts";
import { valueFingerprinter } from "../value-fingerprint.ts";
import { KvReader } from "./kv.ts";
import { DynamicEngine } from "./dynamic.ts";
import { VaultSession } from "./session.ts";
import { createVaultTransport } from "./transport.ts";

/** Vault has no batch read: a poll is one request per secret, this many at a time. */
export const MAX_PARALLEL_REQUESTS = 16;

/** Failures of the connection itself (not of one secret) fail the whole call. */
const CALL_LEVEL_CODES = new Set(["PROVIDER_THROTTLED", "PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT"]);

function isCallLevel(error: unknown): error is ProviderError {
  return error instanceof ProviderError && CALL_LEVEL_CODES.has(error.rpcCode);
}

/**
 * Runs `one` for every ref with bounded parallelism, results in ref order. A per-secret failure
 * becomes that item's error; a call-level failure stops the batch and rejects the call.
 */
async function forEachRef<T>(
  refs: SecretRef[],
  signal: AbortSignal,
  one: (ref: SecretRef, signal: AbortSignal) => Promise<T>,
  fail: (ref: SecretRef, error: unknown) => T,
): Promise<T[]> {
  const batch = new AbortController();
  const batchSignal = AbortSignal.any([signal, batch.signal]);
  const results = new Array<T>(refs.length);
  let next = 0;
  let fatal: unknown;
  async function worker() {
    while (fatal === undefined && next < refs.length) {
      const index = next++;
      const ref = refs[index]!;
      try {
        results[index] = await one(ref, batchSignal);
      } catch (error) {
        if (isCallLevel(error)) {
          fatal ??= error;
          batch.abort();
          return;
        }
        results[index] = fail(ref, error);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(MAX_PARALLEL_REQUESTS, refs.length) }, worker));
  if (fatal !== undefined) throw fatal;
  return results;
}

function createClient(settings: VaultSettings) {
  return nodeVault({
    apiVersion: "v1",
    endpoint: settings.address,
    ...(settings.auth.method !== "approle" ? { token: settings.auth.token } : {}),
    ...(settings.namespace ? { namespace: settings.namespace } : {}),
    // node-vault's debug output includes request bodies (an AppRole secret_id): keep it off.
    debug: () => {},
    "request-promise": createVaultTransport(settings),
  });
}

export function createVaultClient(params: ConfigureParams, ctx: ProviderContext): ProviderClient {
  const settings = parseVaultSettings(params, ctx.env);
  // KV v1 fingerprints are made from values and must be keyed; KV v2's are version metadata.
  const macOfValue = settings.kvVersion === 1 ? valueFingerprinter(params) : undefined;
  if (settings.skipTlsVerify) {
    ctx.log.warn(
      `TLS VERIFICATION IS OFF for ${settings.label} (tls_skip_verify): anyone on the network path can read the Vault token and secrets; use config.ca_cert instead`,
    );
  }
  const client = createClient(settings);
  const session = new VaultSession(client, settings, ctx.log);
  const kv = new KvReader(client, settings, macOfValue);
  const dynamic = new DynamicEngine(client, settings.label);
  const inBand = (ref: SecretRef, error: unknown) => ({ ref, error: toRpcError(error, params.name) });

  return {
    async fingerprint(refs, signal) {
      await session.ready(signal);
      return forEachRef<FingerprintItem>(refs, signal, async (ref, s) => ({ ref, fingerprint: await kv.fingerprint(ref, s) }), inBand);
    },
    async fetch(refs, signal) {
      await session.ready(signal);
      return forEachRef<FetchItem>(refs, signal, async (ref, s) => ({ ref, ...(await kv.read(ref, s)) }), inBand);
    },
    async issue(params, signal) {
      await session.ready(signal);
      return dynamic.issue(params, signal);
    },
    async lease(params, signal) {
      await session.ready(signal);
      if (params.op === "renew") return dynamic.renew(params.leaseId, params.incrementSeconds, signal);
      if (params.op === "lookup") {
        const found = await dynamic.lookup(params.leaseId, signal);
        return { valid: found.valid, expiresAtMs: Math.round(found.expiresAtMs) };
      }
      if (params.op === "revoke") {
        await dynamic.revoke(params, signal);
        return {};
      }
      return { token: await dynamic.agentToken(signal) };
    },
    async session(signal) {
      await session.ready(signal);
      // node-vault keeps the current token on the client (approleLogin stores it there).
      const token = client.token;
      if (!token) throw new ProviderError("PROVIDER_AUTH", `${settings.label}: no Vault token to lend`);
      return { token };
    },
    async health(signal) {
      try {
        await session.check(signal);
        return { ok: true };
      } catch (error) {
        return { ok: false, message: toRpcError(error, params.name).message };
      }
    },
    async close() {
      session.close();
    },
  };
}

export const vaultProvider: ProviderFactory = {
  type: "vault",
  async create(params, ctx) {
    return createVaultClient(params, ctx);
  },
};
