/**
 * Runs a container's strategy after its files are in place (strategies/ hold the strategies
 * themselves), and records the run: on the container's view for `dso ls`, in the log, and to the
 * observer. A strategy that restarts or replaces the container gets this pass's files (and every
 * other current target) delivered into the new one: a tmpfs starts empty.
 */
import type { ActionReport } from "../api/contract.ts";
import type { SecretFile } from "../delivery/types.ts";
import { describeError } from "../errors.ts";
import { FetchBatch } from "../secrets/source.ts";
import type { ContainerStatusBook, ContainerView } from "./container-status.ts";
import { selectionOf, type Desired } from "./desired.ts";
import { buildDeliveries } from "./files.ts";
import type { ConvergeOptions, ReconcilerDeps } from "./reconcile-deps.ts";
import type { SecretVersions } from "./secret-versions.ts";
import { strategyByName } from "./strategies/index.ts";

/** A file set built for delivery in this pass. */
export interface BuiltTarget {
  path: string;
  files: SecretFile[];
  marker: string;
}

/** What to run and with what: the strategy, the files built in this pass, and for a re-creation its env and labels. */
export interface StrategyRequest {
  strategy: Desired["strategy"];
  built: BuiltTarget[];
  env: Record<string, string>;
  labels: Record<string, string>;
  /** The secrets whose version change made the run due. */
  secrets: readonly string[];
}

type RunnerDeps = Pick<ReconcilerDeps, "docker" | "store" | "source" | "planner" | "markers" | "queue" | "log" | "observer">;

export class StrategyRunner {
  constructor(
    private readonly deps: RunnerDeps,
    private readonly book: ContainerStatusBook,
    private readonly versions: SecretVersions,
  ) {}

  /** Runs a strategy after the files are in place; records the run on the container's view. */
  async apply(d: Desired, view: ContainerView, run: StrategyRequest, opts: ConvergeOptions): Promise<Partial<ActionReport>> {
    const { strategy: strategyName, built, secrets } = run;
    const signal = opts.signal;
    const at = new Date().toISOString();
    const started = performance.now();
    const container = { id: d.id, name: d.name };
    const finished = (strategy: string, action?: string, error?: unknown) => {
      const extra = error === undefined ? {} : { error };
      this.deps.observer?.strategyFinished({ container, strategy, ...(action ? { action } : {}), secrets: this.versions.versionsOf(secrets), seconds: (performance.now() - started) / 1000, ...extra });
      for (const secret of this.versions.versionsOf(secrets)) {
        this.deps.observer?.rotationFinished({ container, secret, provider: this.deps.store.get(secret.name)?.spec.provider, strategy, trigger: opts.trigger, ...extra });
      }
    };
    try {
      const result = await strategyByName(strategyName).apply({
        docker: this.deps.docker,
        containerId: d.id,
        containerName: d.name,
        signal: d.signal,
        healthCheckTimeoutMs: d.healthCheckTimeoutMs,
        env: run.env,
        labels: run.labels,
        abort: signal ?? new AbortController().signal,
        log: this.deps.log,
        // This pass's files, into the restarted container (its queue is ours already) or its
        // replacement (through the replacement's own queue, so no other delivery into it runs at
        // the same time). A tmpfs starts empty.
        deliver: (id) => {
          const work = async () => {
            for (const target of built) await this.deps.planner.deliver(id, target.path, target.files, { signal, marker: target.marker });
            await this.deliverCurrentTargets(d, id, built, signal);
          };
          return id === d.id ? work() : this.deps.queue.run(`container:${id}`, work);
        },
      });
      view.lastStrategy = { at, strategy: result.strategy, action: result.action, outcome: "ok", ...(result.detail ? { detail: result.detail } : {}) };
      if (result.containerId !== d.id) this.book.moved(d.id, result.containerId);
      this.deps.log.info("rotated secrets in container", { container: d.name, strategy: result.strategy, action: result.action });
      finished(result.strategy, result.action);
      return { container: result.containerId, action: result.action };
    } catch (error) {
      const message = describeError(error);
      view.lastStrategy = { at, strategy: strategyName, outcome: "failed", detail: message };
      view.error = view.error ? `${view.error}; ${message}` : message;
      this.deps.log.error("rotation strategy failed", { container: d.name, strategy: strategyName, error: message });
      finished(strategyName, undefined, error);
      return { error: view.error };
    }
  }

  /** Targets that were current in this pass must be in a restarted or new container too. */
  private async deliverCurrentTargets(d: Desired, id: string, built: BuiltTarget[], signal?: AbortSignal): Promise<void> {
    const done = new Set(built.map((b) => b.path));
    const rest = d.targets.filter((t) => !done.has(t.path));
    if (rest.length === 0) return;
    const batch = new FetchBatch(this.deps.source, new Set(rest.flatMap((t) => t.specs.map((s) => s.name))), signal);
    try {
      for (const unit of rest) {
        const { values } = await batch.values(unit.specs.map((s) => s.name));
        const group = buildDeliveries({ ...selectionOf(d), secrets: unit.specs }, values).groups.find((g) => g.path === unit.path);
        if (group) await this.deps.planner.deliver(id, unit.path, group.files, { signal, marker: this.deps.markers.marker(group.fingerprints) });
      }
    } finally {
      batch.release();
    }
  }
}
