/**
 * What `dso ls` shows: per container the latest observation of a reconcile — per secret the
 * version wanted (from the provider's fingerprint) and the version actually there (read from
 * the container), the mode, the strategy and its last run. A cache of observations, refreshed by
 * every pass; decisions never read it.
 */
import type { ContainerView } from "../api/contract.ts";
import type { StrategyName } from "../config/types.ts";

export type { ContainerView, SecretView, StrategyRun } from "../api/contract.ts";

export class ContainerStatusBook {
  private readonly views = new Map<string, ContainerView>();

  list(): ContainerView[] {
    return [...this.views.values()];
  }

  get(id: string): ContainerView | undefined {
    return this.views.get(id);
  }

  /** Starts a new observation of a container, keeping what earlier passes recorded of it. */
  begin(id: string, name: string, strategy: StrategyName, secrets: string[]): ContainerView {
    const old = this.views.get(id);
    const view: ContainerView = {
      id,
      name,
      strategy,
      secrets,
      deliveries: old?.deliveries ?? [],
      versions: old?.versions ?? {},
      status: [],
      ...(old?.lastStrategy ? { lastStrategy: old.lastStrategy } : {}),
      observedAt: new Date().toISOString(),
    };
    this.views.set(id, view);
    return view;
  }

  /** A rolling replacement took over: its view carries the strategy run. */
  moved(from: string, to: string): void {
    const view = this.views.get(from);
    if (!view) return;
    this.views.delete(from);
    this.views.set(to, { ...view, id: to });
  }

  forget(id: string): void {
    this.views.delete(id);
  }

  /** Drops views of containers that are no longer running. */
  retain(running: ReadonlySet<string>): void {
    for (const id of this.views.keys()) if (!running.has(id)) this.views.delete(id);
  }
}
