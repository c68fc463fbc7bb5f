/**
 * The one way the agent obtains secret values: one fetch call per provider for a set of names,
 * the optional `agent.cache` as a fallback through outages, and the store told what was seen.
 * A fetched fingerprint that differs from the known one is a change like any poll would find,
 * so whoever fetched first (a Mount, a start, `dso inject`) the change is reported (onChanged).
 */
import { describeError, DsoError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { requestChunks } from "../rpc/protocol.ts";
import { copySecretBytes, wipeSecretBytes, type FetchedItem } from "../rpc/wire-values.ts";
import { refFor, type SecretStore } from "./store.ts";
import type { DynamicCredentials, FetchedSecret, FetchResult, SecretFetcher } from "./types.ts";

/** Errors that mean "the provider could not answer", as opposed to "the secret is gone". */
const OUTAGE_CODES = new Set(["PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_THROTTLED", "PROVIDER_AUTH", "RPC_PROTOCOL", "INTERNAL"]);

/** One line per failed secret, naming it once (providers' messages often name it already). */
function errorLine(name: string, message: string): string {
  return message.includes(`"${name}"`) ? message : `secret "${name}": ${message}`;
}

export interface SecretSourceDeps {
  store: SecretStore;
  /** The live provider for a name (providers change on config reload). */
  provider(name: string): SecretFetcher | undefined;
  log: Pick<FieldLogger, "warn">;
  /** Secrets whose fetched fingerprint differs from the one known before. */
  onChanged?(names: string[]): void;
  /** Dynamic secrets' per-consumer credentials (the lease keeper), once the agent has one. */
  dynamic?(): DynamicCredentials | undefined;
}

function result(values: Map<string, FetchedSecret>, failed: Map<string, { code: string; message: string }>): FetchResult {
  return { values, failed, errors: [...failed].map(([name, e]) => errorLine(name, e.message)) };
}

/** The error code a set of failures is best reported under: one code when they agree. */
export function fetchErrorCode(failed: FetchResult["failed"]): string {
  const codes = new Set([...failed.values()].map((e) => e.code));
  return codes.size === 1 ? [...codes][0]! : "PROVIDER_UNAVAILABLE";
}

export class SecretSource {
  constructor(private readonly deps: SecretSourceDeps) {}

  dynamic(): DynamicCredentials | undefined {
    return this.deps.dynamic?.();
  }

  /** Fetch values for the named (known) secrets, one call per provider; falls back to the cache. */
  async fetch(names: Iterable<string>, signal?: AbortSignal): Promise<FetchResult> {
    const { store } = this.deps;
    const byProvider = new Map<string, string[]>();
    const dynamic = this.dynamic();
    const failedEarly = new Map<string, { code: string; message: string }>();
    const shared: string[] = [];
    for (const name of new Set(names)) {
      const state = store.get(name);
      if (!state) continue;
      // A shared lease serves any consumer (DSO volumes, Swarm services); a per-container one
      // only a delivery that names its container (FetchBatch.values with a consumer).
      if (dynamic?.isDynamic(name) && dynamic.consumerOf(name, "") !== "") {
        shared.push(name);
        continue;
      }
      if (state.spec.lease || dynamic?.isDynamic(name)) {
        const why = dynamic ? "file targets of labelled containers receive it; DSO volumes, Swarm services and env injection need `scope: shared`" : "only a running agent issues it (its lease keeper)";
        failedEarly.set(name, { code: "DELIVERY_REFUSED", message: `secret "${name}" is dynamic (a leased credential, issued per container): ${why}` });
        continue;
      }
      byProvider.set(state.spec.provider, [...(byProvider.get(state.spec.provider) ?? []), name]);
    }
    const values = new Map<string, FetchedSecret>();
    const failed = new Map<string, { code: string; message: string }>(failedEarly);
    const changed: string[] = [];
    await Promise.all(
      shared.map(async (name) => {
        try {
          values.set(name, await dynamic!.credential(name, "", signal));
        } catch (error) {
          failed.set(name, { code: error instanceof DsoError ? error.code : "PROVIDER_UNAVAILABLE", message: describeError(error) });
        }
      }),
    );
    await Promise.all(
      [...byProvider].map(async ([provider, list]) => {
        const fetcher = this.deps.provider(provider);
        // Requests within the protocol's limits: a long list fails no name but its own chunk's.
        const parts = await Promise.all(
          requestChunks(list, (name) => refFor(store.get(name)!.spec)).map(async (part): Promise<FetchedItem[]> => {
            try {
              if (!fetcher) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${provider} is not configured`);
              const got = await fetcher.fetch(
                part.map((name) => refFor(store.get(name)!.spec)),
                signal,
              );
              for (const extra of got.slice(part.length)) wipeSecretBytes(extra.value, { whole: false });
              return part.map((name, i) => got[i] ?? { ref: { name } });
            } catch (error) {
              // A provider that failed as a whole (its fetch process could not start, say) keeps its code.
              const code = error instanceof DsoError && OUTAGE_CODES.has(error.code) ? error.code : "PROVIDER_UNAVAILABLE";
              return part.map((name) => ({ ref: { name }, error: { code: code as "PROVIDER_UNAVAILABLE", message: describeError(error) } }));
            }
          }),
        );
        const items = parts.flat();
        list.forEach((name, i) => {
          const item = items[i];
          // Items beyond the names asked for (a confused provider) hold values nobody takes.
          if (item?.value && item.fingerprint) {
            const fetched: FetchedSecret = { value: item.value, fingerprint: item.fingerprint, version: item.version };
            if (store.recordFetched(name, fetched)) changed.push(name);
            values.set(name, fetched);
            return;
          }
          // The cache rides out outages; a secret the provider says is gone is not served from it.
          wipeSecretBytes(item?.value, { whole: false });
          const outage = !item?.error || OUTAGE_CODES.has(item.error.code);
          const cached = outage ? store.cachedValue(name) : undefined;
          const message = item?.error?.message ?? "no value returned";
          store.recordError(name, message, new Date());
          if (cached) {
            this.deps.log.warn("provider failed; serving the last known value from the in-memory cache", { secret: name });
            values.set(name, { ...cached, value: copySecretBytes(cached.value) });
          } else {
            failed.set(name, { code: item?.error?.code ?? "PROVIDER_UNAVAILABLE", message });
          }
        });
      }),
    );
    if (changed.length) this.deps.onChanged?.(changed);
    return result(values, failed);
  }
}

/** Ends a fetch's window: every value it returned is filled with zeros. */
export function releaseFetch(result: FetchResult | undefined): void {
  for (const secret of result?.values.values() ?? []) wipeSecretBytes(secret.value);
}

/**
 * The values of one reconcile wave: fetched once, for every secret the wave may need, on first
 * demand (a wave over up-to-date containers fetches nothing). Names asked for later that were not
 * candidates are fetched then. `release()` ends the window: the wave's values are wiped.
 */
export class FetchBatch {
  private fetched?: Promise<FetchResult>;
  private readonly attempted = new Set<string>();
  private readonly extra: Promise<FetchResult>[] = [];
  /** Results that have landed, wiped at release without waiting a tick. */
  private readonly landed: FetchResult[] = [];
  private released = false;

  constructor(
    private readonly source: SecretSource,
    private readonly candidates: ReadonlySet<string>,
    private readonly signal?: AbortSignal,
  ) {}

  /** Dynamic credentials of this wave, per secret and consumer: one issue each, wiped at release. */
  private readonly credentials = new Map<string, Promise<FetchResult>>();

  /**
   * Values for `names`; with `consumer` (a container id) a dynamic secret is that consumer's own
   * credential, asked once per wave whatever the number of paths that deliver it.
   */
  async values(names: readonly string[], consumer?: string): Promise<FetchResult> {
    const dynamic = this.source.dynamic();
    const leased = consumer && dynamic ? names.filter((n) => dynamic.isDynamic(n)) : [];
    if (leased.length === 0) return this.staticValues(names);
    const rest = names.filter((n) => !leased.includes(n));
    const parts = await Promise.all([rest.length ? this.staticValues(rest) : Promise.resolve(result(new Map(), new Map())), ...leased.map((n) => this.credential(dynamic!, n, consumer!))]);
    const values = new Map<string, FetchedSecret>();
    const failed = new Map<string, { code: string; message: string }>();
    for (const part of parts) {
      for (const [name, value] of part.values) values.set(name, value);
      for (const [name, error] of part.failed) failed.set(name, error);
    }
    return result(values, failed);
  }

  private credential(dynamic: DynamicCredentials, name: string, container: string): Promise<FetchResult> {
    const key = `${name}\0${dynamic.consumerOf(name, container)}`;
    let pending = this.credentials.get(key);
    if (!pending) {
      pending = this.track(
        dynamic.credential(name, container, this.signal).then(
          (secret) => result(new Map([[name, secret]]), new Map()),
          (error) => result(new Map(), new Map([[name, { code: error instanceof DsoError ? error.code : "PROVIDER_UNAVAILABLE", message: describeError(error) }]])),
        ),
      );
      this.credentials.set(key, pending);
    }
    return pending;
  }

  private async staticValues(names: readonly string[]): Promise<FetchResult> {
    const dynamic = this.source.dynamic();
    if (!this.fetched) {
      const all = new Set([...this.candidates, ...names].filter((n) => !dynamic?.isDynamic(n)));
      for (const n of all) this.attempted.add(n);
      this.fetched = this.track(this.source.fetch(all, this.signal));
    }
    const missing = names.filter((n) => !this.attempted.has(n));
    if (missing.length) {
      for (const n of missing) this.attempted.add(n);
      this.extra.push(this.track(this.source.fetch(missing, this.signal)));
    }
    const results = await Promise.all([this.fetched, ...this.extra]);
    const values = new Map<string, FetchedSecret>();
    const failed = new Map<string, { code: string; message: string }>();
    const wanted = new Set(names);
    for (const fetched of results) {
      for (const [name, value] of fetched.values) if (wanted.has(name)) values.set(name, value);
      for (const [name, error] of fetched.failed) if (wanted.has(name)) failed.set(name, error);
    }
    return result(values, failed);
  }

  /** A fetch of this wave: its values are the wave's, wiped at release even if it lands later. */
  private track(pending: Promise<FetchResult>): Promise<FetchResult> {
    return pending.then((result) => {
      if (this.released) releaseFetch(result);
      else this.landed.push(result);
      return result;
    });
  }

  /** Ends the wave's window: its values are wiped (those of a fetch still in flight, once it lands). */
  release(): void {
    this.released = true;
    for (const result of this.landed.splice(0)) releaseFetch(result);
    this.fetched = undefined;
    this.extra.length = 0;
    this.credentials.clear();
  }
}
