/**
 * The Azure Key Vault provider, compatible with the Go DSO's azure plugin (`config.vault_url`,
 * DefaultAzureCredential by default, `_` in names becomes `-`, a JSON object gives its keys).
 * Polling reads properties only (see fingerprint.ts); values are read by fetch alone.
 */
import type { TokenCredential } from "@azure/identity";
import { SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import type { ConfigureParams, FetchItem, ProviderClient, ProviderContext, ProviderFactory, SecretRef } from "../types.ts";
import { parseAzureSettings, type AzureSettings } from "./config.ts";
import { QueueClient } from "@azure/storage-queue";
import { buildCredential } from "./credential.ts";
import { createStorageQueueEvents } from "./events.ts";
import { isPerSecretError, toAzureError } from "./errors.ts";
import {
  changeFingerprint,
  Fingerprinter,
  LIST_PAGE_SIZE,
  PER_SECRET_CONCURRENCY,
  resolveRef,
  versionFingerprint,
  type Listing,
  type MetadataSource,
  type SecretMetadata,
} from "./fingerprint.ts";
import { mapLimit } from "../../src/util/map-limit.ts";
import { secretValue } from "./secrets.ts";
import { MAX_RETRIES, throttleBudgetPolicy } from "./throttle-budget.ts";

/** Each RPC call finishes (or fails typed) before the agent's 30 s call timeout kills us. */
export const OPERATION_DEADLINE_MS = 25_000;
/** First retry delay for 5xx and network errors; the SDK doubles it. */
const RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 4_000;

export interface AzureClientOverrides {
  /** Any TokenCredential (workload-specific or a test's own); replaces the one auth.method builds. */
  credential?: TokenCredential;
  /** Extra trusted CA certificates (PEM) for the vault's TLS, e.g. a private endpoint's CA. */
  tlsCa?: string;
}

function secretClient(settings: AzureSettings, credential: TokenCredential, overrides: AzureClientOverrides): SecretClient {
  const options: SecretClientOptions = {
    disableChallengeResourceVerification: settings.disableChallengeResourceVerification,
    retryOptions: { maxRetries: MAX_RETRIES, retryDelayInMs: RETRY_DELAY_MS, maxRetryDelayInMs: MAX_RETRY_DELAY_MS },
    additionalPolicies: [throttleBudgetPolicy(settings.name)],
    ...(overrides.tlsCa ? { tlsOptions: { ca: overrides.tlsCa } } : {}),
  };
  return new SecretClient(settings.vaultUrl, credential, options);
}

function metadataOf(p: { name: string; version?: string; enabled?: boolean; createdOn?: Date; updatedOn?: Date }): SecretMetadata {
  return { name: p.name, version: p.version, enabled: p.enabled, createdOn: p.createdOn, updatedOn: p.updatedOn };
}

async function readAllPages(pages: AsyncIterable<Array<Parameters<typeof metadataOf>[0]>>): Promise<Listing> {
  const items: SecretMetadata[] = [];
  let count = 0;
  for await (const page of pages) {
    count++;
    for (const p of page) items.push(metadataOf(p));
  }
  return { items, pages: count };
}

function keyVaultMetadata(client: SecretClient): MetadataSource {
  return {
    listSecrets: (signal) =>
      readAllPages(client.listPropertiesOfSecrets({ abortSignal: signal }).byPage({ maxPageSize: LIST_PAGE_SIZE })),
    listVersions: (name, signal) =>
      readAllPages(client.listPropertiesOfSecretVersions(name, { abortSignal: signal }).byPage({ maxPageSize: LIST_PAGE_SIZE })),
  };
}

/** The caller's signal, cut off at OPERATION_DEADLINE_MS. */
function deadline(signal: AbortSignal): AbortSignal {
  return AbortSignal.any([signal, AbortSignal.timeout(OPERATION_DEADLINE_MS)]);
}

/** Builds a client for already-parsed settings; the factory and in-process tests use this. */
export function createAzureClient(
  settings: AzureSettings,
  ctx: ProviderContext,
  credential: TokenCredential,
  overrides: AzureClientOverrides = {},
): ProviderClient & { readonly fingerprinter: Fingerprinter } {
  const client = secretClient(settings, credential, overrides);
  const fingerprinter = new Fingerprinter(keyVaultMetadata(client), settings.name);

  async function fetchOne(ref: SecretRef, signal: AbortSignal): Promise<FetchItem> {
    try {
      const r = resolveRef(ref, settings.name);
      const secret = await client.getSecret(r.kvName, { abortSignal: signal, ...(ref.version ? { version: ref.version } : {}) });
      const { version, updatedOn, createdOn, contentType } = secret.properties;
      const changed = updatedOn ?? createdOn;
      const fingerprint = ref.version ? versionFingerprint(version ?? ref.version) : changed ? changeFingerprint(changed, Date.now()) : undefined;
      return {
        ref,
        ...(fingerprint ? { fingerprint } : {}),
        ...(version ? { version } : {}),
        value: secretValue(secret.value ?? "", contentType),
      };
    } catch (e) {
      const error = toAzureError(e, settings.name, `secret "${ref.name}"`);
      if (!isPerSecretError(error)) throw error;
      return { ref, error: { code: error.rpcCode, message: error.message } };
    }
  }

  return {
    fingerprinter,
    async fingerprint(refs, signal) {
      const items = await fingerprinter.fingerprint(refs, deadline(signal));
      const poll = fingerprinter.lastPoll;
      ctx.log.debug("azure poll", { refs: refs.length, ...poll });
      return items;
    },
    fetch(refs, signal) {
      const bounded = deadline(signal);
      return mapLimit(refs, PER_SECRET_CONCURRENCY, (ref) => fetchOne(ref, bounded));
    },
    async health(signal) {
      try {
        // One page of one item: proves the credential, the network path and the list permission.
        const pages = client.listPropertiesOfSecrets({ abortSignal: deadline(signal) }).byPage({ maxPageSize: 1 });
        await pages.next();
        return { ok: true };
      } catch (e) {
        const error = toAzureError(e, settings.name, "health check");
        return { ok: false, message: `${error.rpcCode}: ${error.message}` };
      }
    },
    async close() {},
  };
}

export const azureProvider: ProviderFactory = {
  type: "azure",
  async create(params: ConfigureParams, ctx: ProviderContext): Promise<ProviderClient> {
    const settings = parseAzureSettings(params, ctx.env);
    const credential = buildCredential(settings, params.credentials);
    const client = createAzureClient(settings, ctx, credential);
    if (!params.events) return client;
    // The change-event queue is read with the same credential (docs/providers/azure.md).
    return { ...client, events: createStorageQueueEvents(new QueueClient(params.events.queue, credential), params.name) };
  },
};
