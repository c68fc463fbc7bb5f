/**
 * What `dso ls` shows: per container the latest observation of a reconcile — per secret the
 * version wanted (from the provider's fingerprint) and the version actually there (read from
 * the container), the mode, the strategy and its last run. A cache of observations, refreshed by
 * every pass; decisions never read it.
 */
import type { StrategyName } from "../config/types.ts";
import type { StrategyResult } from "./strategies/index.ts";

export interface SecretView {
  name: string;
  /** Directory in the container, or the DSO volume the secret reaches it through. */
  path: string;
  volume?: string;
  mode?: string;
  /** Short keyed tokens (secrets/version-marker.ts), never derived from a value alone. */
  wanted?: string;
  actual?: string;
  /** The provider's own version id, where it has one (metadata). */
  version?: string;
  /** current | pending: <why> | stale: <why> | error: <why> */
  state: string;
}

export interface StrategyRun {
  at: string;
  strategy: StrategyName;
  action?: StrategyResult["action"];
  outcome: "ok" | "failed";
  detail?: string;
}

export interface ContainerView {
  id: string;
  name: string;
  strategy: StrategyName;
  secrets: string[];
  /** Per target directory: how and when files were last delivered by this agent. */
  deliveries: Array<{ path: string; mode: string; files: string[]; at: string }>;
  /** secret → the provider's version id of what was delivered, where it has one. */
  versions: Record<string, string>;
  status: SecretView[];
  lastStrategy?: StrategyRun;
  observedAt: string;
  error?: string;
}

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
