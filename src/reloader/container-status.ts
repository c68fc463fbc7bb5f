/**
 * What `dso ls` shows: per container the latest observation of a reconcile — per secret the
 * version wanted (from the provider's fingerprint) and the version actually there (read from
 * the container), the mode, the strategy and its last run. A cache of observations, refreshed by
 * every pass; decisions never read it.
 */
import { outputViews } from "../templates/outputs.ts";
import type { ContainerView, SecretView } from "../api/contract.ts";
import type { StrategyName } from "../config/types.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";

export type { ContainerView, SecretView, StrategyRun } from "../api/contract.ts";

/** How long a replaced container's id is remembered: longer than any wave that listed it runs. */
export const REPLACED_KEPT_MS = 10 * 60_000;

export class ContainerStatusBook {
  private readonly views = new Map<string, ContainerView>();
  /** Old id → the rolling replacement that took over from it, and when (kept REPLACED_KEPT_MS). */
  private readonly replacedBy = new Map<string, { to: string; at: number }>();

  list(): ContainerView[] {
    return [...this.views.values()];
  }

  get(id: string): ContainerView | undefined {
    return this.views.get(id);
  }

  /**
   * Starts a new observation of a container, keeping what earlier passes recorded of it. Its
   * secret lines stay the previous pass's until the caller replaces them with the complete new set
   * (`view.status = lines`), so `dso ls` during a wave never shows a row without them.
   */
  begin(id: string, name: string, strategy: StrategyName, secrets: string[]): ContainerView {
    const old = this.views.get(id);
    const view: ContainerView = {
      id,
      name,
      strategy,
      secrets,
      deliveries: old?.deliveries ?? [],
      versions: old?.versions ?? {},
      status: old?.status ?? [],
      ...(old?.lastStrategy ? { lastStrategy: old.lastStrategy } : {}),
      observedAt: new Date().toISOString(),
    };
    this.views.set(id, view);
    return view;
  }

  /**
   * A rolling replacement took over: `view` (the old container's, which Docker's destroy event
   * may have made the book forget already) is now the replacement's and carries the strategy run.
   */
  moved(from: string, to: string, view: ContainerView, now = Date.now()): void {
    for (const [old, entry] of this.replacedBy) if (now - entry.at > REPLACED_KEPT_MS) this.replacedBy.delete(old);
    this.replacedBy.set(from, { to, at: now });
    this.views.delete(from);
    this.views.set(to, { ...view, id: to });
  }

  /**
   * The container that replaced `id`, while a wave listed before the replacement may still come
   * back to `id` (gone now: nothing to do there, and no error to show).
   */
  replacement(id: string): string | undefined {
    return this.replacedBy.get(id)?.to;
  }

  forget(id: string): void {
    this.views.delete(id);
  }

  /**
   * Drops views of containers that are no longer running. A replacement that took over after
   * the list was made counts as running when the container it replaced was listed.
   */
  retain(running: ReadonlySet<string>): void {
    const replacements = new Set([...this.replacedBy].filter(([from]) => running.has(from)).map(([, entry]) => entry.to));
    for (const id of this.views.keys()) if (!running.has(id) && !replacements.has(id)) this.views.delete(id);
  }
}

/** What a secret's line in `dso ls` is built from. */
export interface SecretViewSource {
  store: SecretStore;
  markers: VersionMarkers;
  /** Why a secret has no fingerprint yet, in words (e.g. "first poll in 4m"). */
  pendingReason?: (secret: string) => string;
}

/**
 * The secrets of one file set at one path: wanted and actual version (keyed tokens), and the state
 * in words. Wanted is read from the marker the set should carry, so a set with one token for all
 * its secrets (more than 150) compares like any other.
 */
export function secretViews(src: SecretViewSource, names: readonly string[], path: string, extra: Partial<SecretView>, actualMarker?: string): SecretView[] {
  const wantedMarker = src.markers.known(names, (name) => src.store.get(name)?.fingerprint);
  const wantedTokens = wantedMarker ? src.markers.read(wantedMarker, names) : undefined;
  const actualTokens = src.markers.read(actualMarker, names);
  return names.map((name) => {
    const state = src.store.get(name);
    const fp = state?.fingerprint;
    const wanted = fp ? (wantedTokens?.get(name) ?? src.markers.token(name, fp)) : undefined;
    const actual = actualTokens?.get(name);
    let status: string;
    if (state?.stale) status = `stale: provider ${state.spec.provider} unavailable since ${shortTime(state.staleSince)}`;
    else if (!wanted) status = `pending: ${src.pendingReason?.(name) ?? "first poll"}`;
    else if (actual === wanted) status = "current";
    else status = "pending: delivery";
    const outputs = outputViews(state ? [state.spec] : []).map(({ name: output, sources, kind }) => ({ name: output, sources, kind }));
    return { name, path, wanted, actual, ...(state?.version ? { version: state.version } : {}), state: status, ...(outputs.length ? { outputs } : {}), ...extra };
  });
}

function shortTime(iso: string | undefined): string {
  return iso ? iso.slice(11, 16) : "?";
}
