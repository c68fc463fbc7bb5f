/**
 * The one way the agent obtains secret values: one fetch call per provider for a set of names,
 * the optional `agent.cache` as a fallback through outages, and the store told what was seen.
 * A fetched fingerprint that differs from the known one is a change like any poll would find,
 * so whoever fetched first (a Mount, a start, `dso inject`) the change is reported (onChanged).
 */
import { describeError, DsoError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import type { FetchItem } from "../rpc/protocol.ts";
import { refFor, type SecretStore } from "./store.ts";
import type { FetchedSecret, FetchResult, SecretFetcher } from "./types.ts";

/** Errors that mean "the provider could not answer", as opposed to "the secret is gone". */
const OUTAGE_CODES = new Set(["PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_THROTTLED", "PROVIDER_AUTH", "RPC_PROTOCOL", "INTERNAL"]);

/** Every fetch error line starts with this, so a line can be attributed to its secret. */
function secretErrorPrefix(name: string): string {
  return `secret "${name}": `;
}

export interface SecretSourceDeps {
  store: SecretStore;
  /** The live provider for a name (providers change on config reload). */
  provider(name: string): SecretFetcher | undefined;
  log: Pick<FieldLogger, "warn">;
  /** Secrets whose fetched fingerprint differs from the one known before. */
  onChanged?(names: string[]): void;
}

export class SecretSource {
  constructor(private readonly deps: SecretSourceDeps) {}

  /** Fetch values for the named (known) secrets, one call per provider; falls back to the cache. */
  async fetch(names: Iterable<string>, signal?: AbortSignal): Promise<FetchResult> {
    const { store } = this.deps;
    const byProvider = new Map<string, string[]>();
    for (const name of new Set(names)) {
      const state = store.get(name);
      if (!state) continue;
      byProvider.set(state.spec.provider, [...(byProvider.get(state.spec.provider) ?? []), name]);
    }
    const values = new Map<string, FetchedSecret>();
    const errors: string[] = [];
    const changed: string[] = [];
    await Promise.all(
      [...byProvider].map(async ([provider, list]) => {
        const fetcher = this.deps.provider(provider);
        let items: FetchItem[] = [];
        try {
          if (!fetcher) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${provider} is not configured`);
          items = await fetcher.fetch(
            list.map((name) => refFor(store.get(name)!.spec)),
            signal,
          );
        } catch (error) {
          items = list.map((name) => ({ ref: { name }, error: { code: "PROVIDER_UNAVAILABLE", message: describeError(error) } }));
        }
        list.forEach((name, i) => {
          const item = items[i];
          if (item?.value && item.fingerprint) {
            const fetched = { value: item.value, fingerprint: item.fingerprint, version: item.version };
            if (store.recordFetched(name, fetched)) changed.push(name);
            values.set(name, fetched);
            return;
          }
          // The cache rides out outages; a secret the provider says is gone is not served from it.
          const outage = !item?.error || OUTAGE_CODES.has(item.error.code);
          const cached = outage ? store.cachedValue(name) : undefined;
          const message = item?.error?.message ?? "no value returned";
          store.recordError(name, message, new Date());
          if (cached) {
            this.deps.log.warn("provider failed; serving the last known value from the in-memory cache", { secret: name });
            values.set(name, cached);
          } else {
            errors.push(`${secretErrorPrefix(name)}${message}`);
          }
        });
      }),
    );
    if (changed.length) this.deps.onChanged?.(changed);
    return { values, errors };
  }
}

/**
 * The values of one reconcile wave: fetched once, for every secret the wave may need, on first
 * demand (a wave over up-to-date containers fetches nothing). Names asked for later that were not
 * candidates are fetched then. `release()` ends the window: the wave's values are dropped.
 */
export class FetchBatch {
  private fetched?: Promise<FetchResult>;
  private readonly attempted = new Set<string>();
  private readonly extra: Promise<FetchResult>[] = [];

  constructor(
    private readonly source: SecretSource,
    private readonly candidates: ReadonlySet<string>,
    private readonly signal?: AbortSignal,
  ) {}

  async values(names: readonly string[]): Promise<FetchResult> {
    if (!this.fetched) {
      const all = new Set([...this.candidates, ...names]);
      for (const n of all) this.attempted.add(n);
      this.fetched = this.source.fetch(all, this.signal);
    }
    const missing = names.filter((n) => !this.attempted.has(n));
    if (missing.length) {
      for (const n of missing) this.attempted.add(n);
      this.extra.push(this.source.fetch(missing, this.signal));
    }
    const results = await Promise.all([this.fetched, ...this.extra]);
    const values = new Map<string, FetchedSecret>();
    const errors: string[] = [];
    const wanted = new Set(names);
    for (const result of results) {
      for (const [name, value] of result.values) if (wanted.has(name)) values.set(name, value);
      for (const error of result.errors) if ([...wanted].some((n) => error.startsWith(secretErrorPrefix(n)))) errors.push(error);
    }
    return { values, errors };
  }

  /** Drops the references to this wave's values. */
  release(): void {
    this.fetched = undefined;
    this.extra.length = 0;
  }
}
