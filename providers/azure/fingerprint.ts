/**
 * Drift detection without reading values. Key Vault lists secret properties (never values):
 * the vault-wide list gives each secret's current-version attributes, 25 per call; the
 * per-secret version list gives every version with its id, 25 per call. A poll uses whichever
 * costs fewer calls for the refs at hand (see chooseStrategy), and pinned refs always use the
 * version list, which is the only values-free way to see one version.
 *
 * Fingerprints: `version:<id>` for a pinned ref (a version's value never changes), and
 * `updated:<unix seconds>` for a ref that follows the current version. Key Vault's change date
 * has one-second resolution, so two writes within the same second could hide the second one
 * from a poll made in between; while the change date is younger than SETTLE_WINDOW_MS the
 * fingerprint carries `~settling`, and dropping that suffix later makes the agent look once
 * more. The same function makes the fingerprint for fetch, so both agree.
 */
import { mapLimit } from "../../src/util/map-limit.ts";
import { ProviderError } from "../errors.ts";
import type { FingerprintItem, SecretRef } from "../types.ts";
import { isPerSecretError, toAzureError } from "./errors.ts";
import { isValidVersion, keyVaultName } from "./secrets.ts";

/** Covers the one-second resolution plus clock skew between this host and Key Vault. */
export const SETTLE_WINDOW_MS = 60_000;
/** Before the vault's size is known, list it when more than this many secrets are watched. */
export const PER_SECRET_MAX_UNKNOWN_VAULT = 3;
/** Key Vault's largest page for both list operations. */
export const LIST_PAGE_SIZE = 25;
/** Parallel per-secret calls, so a poll of a few dozen secrets is not serialised. */
export const PER_SECRET_CONCURRENCY = 8;

export interface SecretMetadata {
  name: string;
  version?: string;
  enabled?: boolean;
  createdOn?: Date;
  updatedOn?: Date;
}

export interface Listing {
  items: SecretMetadata[];
  /** Calls made (pages read). */
  pages: number;
}

/** The two values-free Key Vault calls the fingerprinter needs. */
export interface MetadataSource {
  listSecrets(signal: AbortSignal): Promise<Listing>;
  listVersions(name: string, signal: AbortSignal): Promise<Listing>;
}

export type Strategy = "vault-list" | "per-secret";

export function changeFingerprint(updatedOn: Date, now: number): string {
  const seconds = Math.floor(updatedOn.getTime() / 1000);
  const settling = now - updatedOn.getTime() < SETTLE_WINDOW_MS;
  return settling ? `updated:${seconds}~settling` : `updated:${seconds}`;
}

export function versionFingerprint(version: string): string {
  return `version:${version.toLowerCase()}`;
}

/**
 * One vault list costs ceil(secrets in vault / 25) calls; following a secret through its version
 * list costs one call per 25 versions of it. Pick the cheaper, using what the last polls learned;
 * before the vault's size is known, only a handful of secrets go one by one.
 */
export function chooseStrategy(perSecretCalls: number, vaultListPages: number | undefined): Strategy {
  if (perSecretCalls === 0) return "per-secret";
  if (vaultListPages === undefined) return perSecretCalls <= PER_SECRET_MAX_UNKNOWN_VAULT ? "per-secret" : "vault-list";
  return perSecretCalls < vaultListPages ? "per-secret" : "vault-list";
}

/** The version Key Vault returns for an unversioned get: the most recently created. */
export function currentVersion(versions: SecretMetadata[]): SecretMetadata | undefined {
  const time = (d: Date | undefined) => d?.getTime() ?? 0;
  let best: SecretMetadata | undefined;
  for (const v of versions) {
    if (!best || time(v.createdOn) > time(best.createdOn) || (time(v.createdOn) === time(best.createdOn) && time(v.updatedOn) > time(best.updatedOn))) {
      best = v;
    }
  }
  return best;
}


export interface ResolvedRef {
  ref: SecretRef;
  /** Key Vault name, lower-cased for lookups (Key Vault names are case-insensitive). */
  key: string;
  kvName: string;
}

/** Validates a ref against Key Vault's rules; throws a per-ref error. */
export function resolveRef(ref: SecretRef, instance: string): ResolvedRef {
  const who = `provider ${instance} (azure)`;
  if (ref.stage) {
    throw new ProviderError("CONFIG_INVALID", `${who}: secret "${ref.name}": Key Vault has no version stages; pin a version instead`);
  }
  const kvName = keyVaultName(ref.name);
  if (!kvName) {
    throw new ProviderError("SECRET_NOT_FOUND", `${who}: secret "${ref.name}" is not a valid Key Vault name (1-127 letters, digits, dashes)`);
  }
  if (ref.version !== undefined && !isValidVersion(ref.version)) {
    throw new ProviderError("SECRET_NOT_FOUND", `${who}: secret "${ref.name}": version must be a Key Vault version id`);
  }
  return { ref, key: kvName.toLowerCase(), kvName };
}

/** What one poll cost; the provider logs it and tests assert on it. */
export interface PollReport {
  strategy: Strategy;
  vaultListPages: number;
  versionListCalls: number;
}

export class Fingerprinter {
  /** Pages of the last vault list: the price of the next one. */
  private vaultListPages: number | undefined;
  /** Pages of each secret's last version list. */
  private readonly versionPages = new Map<string, number>();
  lastPoll: PollReport | undefined;

  constructor(
    private readonly source: MetadataSource,
    private readonly instance: string,
    private readonly clock: () => number = Date.now,
  ) {}

  async fingerprint(refs: SecretRef[], signal: AbortSignal): Promise<FingerprintItem[]> {
    const now = this.clock();
    const resolved = refs.map((ref) => {
      try {
        return resolveRef(ref, this.instance);
      } catch (error) {
        return error as ProviderError;
      }
    });
    const valid = resolved.filter((r): r is ResolvedRef => !(r instanceof ProviderError));
    const pinned = new Set(valid.filter((r) => r.ref.version !== undefined).map((r) => r.key));
    const followOnly = [...new Set(valid.filter((r) => r.ref.version === undefined && !pinned.has(r.key)).map((r) => r.key))];
    const perSecretCalls = followOnly.reduce((sum, key) => sum + (this.versionPages.get(key) ?? 1), 0);
    const strategy = chooseStrategy(perSecretCalls, this.vaultListPages);
    const report: PollReport = { strategy, vaultListPages: 0, versionListCalls: 0 };

    let current: Map<string, SecretMetadata> | undefined;
    if (strategy === "vault-list" && followOnly.length > 0) {
      const listing = await this.source.listSecrets(signal).catch((e) => {
        throw toAzureError(e, this.instance, "listing the vault's secrets");
      });
      this.vaultListPages = listing.pages;
      report.vaultListPages = listing.pages;
      current = new Map(listing.items.map((item) => [item.name.toLowerCase(), item]));
    }

    // Every name that needs its version list is read once per poll, a few at a time.
    const needVersions = [...new Set(valid.filter((r) => r.ref.version !== undefined || !current).map((r) => r.key))];
    const kvNames = new Map(valid.map((r) => [r.key, r.kvName]));
    const versionLists = new Map<string, SecretMetadata[] | ProviderError>();
    await mapLimit(needVersions, PER_SECRET_CONCURRENCY, async (key) => {
      const name = kvNames.get(key)!;
      try {
        const listing = await this.source.listVersions(name, signal);
        this.versionPages.set(key, Math.max(1, listing.pages));
        report.versionListCalls += Math.max(1, listing.pages);
        versionLists.set(key, listing.items);
      } catch (e) {
        report.versionListCalls += 1;
        const error = toAzureError(e, this.instance, `secret "${name}"`);
        if (!isPerSecretError(error)) throw error;
        versionLists.set(key, error);
      }
    });
    this.lastPoll = report;

    return resolved.map((r, index): FingerprintItem => {
      const ref = refs[index]!;
      try {
        if (r instanceof ProviderError) throw r;
        return { ref, fingerprint: this.fingerprintOne(r, current, versionLists.get(r.key), now) };
      } catch (error) {
        const mapped = toAzureError(error, this.instance, `secret "${ref.name}"`);
        return { ref, error: { code: mapped.rpcCode, message: mapped.message } };
      }
    });
  }

  private fingerprintOne(
    r: ResolvedRef,
    current: Map<string, SecretMetadata> | undefined,
    versions: SecretMetadata[] | ProviderError | undefined,
    now: number,
  ): string {
    const who = `provider ${this.instance} (azure): secret "${r.ref.name}"`;
    if (versions instanceof ProviderError) throw versions;
    if (r.ref.version !== undefined) {
      const wanted = r.ref.version.toLowerCase();
      const found = versions?.find((v) => v.version?.toLowerCase() === wanted);
      if (!found) throw new ProviderError("SECRET_NOT_FOUND", `${who}: version ${r.ref.version} not found`);
      if (found.enabled === false) throw new ProviderError("SECRET_NOT_FOUND", `${who}: version ${r.ref.version} is disabled`);
      return versionFingerprint(found.version!);
    }
    const item = current ? current.get(r.key) : currentVersion(versions ?? []);
    if (!item) throw new ProviderError("SECRET_NOT_FOUND", `${who}: not found in the vault`);
    if (item.enabled === false) throw new ProviderError("SECRET_NOT_FOUND", `${who}: its current version is disabled`);
    const changed = item.updatedOn ?? item.createdOn;
    if (!changed) throw new ProviderError("PROVIDER_UNAVAILABLE", `${who}: Key Vault returned no change date`);
    return changeFingerprint(changed, now);
  }
}
