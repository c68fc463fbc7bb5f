/**
 * Runs a container's strategy after its files are in place (strategies/ hold the strategies
 * themselves), and records the run: on the container's view for `dso ls`, in the log, and to the
 * observer. A strategy that restarts or replaces the container gets this pass's files (and every
 * other current target) delivered into the new one: a tmpfs starts empty. For `rolling` the files
 * are not in the old container yet (`deferred`): only the replacement gets them, so a rollback
 * leaves the old container on its previous files. A rotation rolled back is not tried again for
 * the same versions until the next version change or `dso rotate`.
 */
import type { ActionReport } from "../api/contract.ts";
import type { DeliveryResult, SecretFile } from "../delivery/types.ts";
import { describeError } from "../errors.ts";
import { FetchBatch } from "../secrets/source.ts";
import type { ContainerStatusBook, ContainerView } from "./container-status.ts";
import { selectionOf, type Desired } from "./desired.ts";
import { buildDeliveries } from "./files.ts";
import type { ConvergeOptions, ReconcilerDeps } from "./reconcile-deps.ts";
import type { SecretVersions } from "./secret-versions.ts";
import { strategyByName } from "./strategies/index.ts";
import { RollbackError } from "./strategies/rollback.ts";
import { pruneKeptFiles, restorePreviousFiles, type KeptTarget } from "./previous-files.ts";

/** A file set built for delivery in this pass. */
export interface BuiltTarget extends KeptTarget {
  path: string;
  files: SecretFile[];
  marker: string;
  /**
   * Not delivered into the running container: the strategy's replacement gets it (rolling), or
   * these versions were rolled back here already (signal).
   */
  deferred?: boolean;
  /** The marker the target held before this pass (what a restore switches back to). */
  previousMarker?: string;
}

/** A rotation that was rolled back: the versions it wanted, and why. */
interface RolledBack {
  wanted: string;
  reason: string;
  /** `<path>\0<marker>` of each file set it wanted. */
  targets: Set<string>;
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

  /** Rotations rolled back, per container: not tried again for the same wanted versions. */
  private readonly rolledBack = new Map<string, RolledBack>();

  /** These versions of a file set were rolled back in this container: not delivered again until a change or `dso rotate`. */
  isRolledBack(id: string, path: string, marker: string): boolean {
    return this.rolledBack.get(id)?.targets.has(`${path}\0${marker}`) ?? false;
  }

  /**
   * Runs a strategy after the files are in place; records the run on the container's view. Kept
   * previous versions (signal) are pruned once it is over, whatever the outcome.
   */
  async apply(d: Desired, view: ContainerView, run: StrategyRequest, opts: ConvergeOptions): Promise<Partial<ActionReport> & { repeated?: boolean }> {
    try {
      return await this.applyOnce(d, view, run, opts);
    } finally {
      await pruneKeptFiles(this.deps.planner, d.id, run.built, this.deps.log, opts.signal);
    }
  }

  private async applyOnce(d: Desired, view: ContainerView, run: StrategyRequest, opts: ConvergeOptions): Promise<Partial<ActionReport> & { repeated?: boolean }> {
    const { strategy: strategyName, built, secrets } = run;
    const signal = opts.signal;
    const wanted = wantedKey(run);
    const earlier = this.rolledBack.get(d.id);
    if (earlier?.wanted === wanted && opts.trigger !== "rotate" && opts.trigger !== "inject") {
      // The same versions failed here already: say so, and wait for a change or `dso rotate`.
      this.markRolledBack(view, built, earlier.reason);
      return { error: view.error, repeated: true };
    }
    if (Object.keys(run.env).length) this.deps.log.info("re-creating container to set its secret environment variables", { container: d.name });
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
    const deliveredInto = new Map<string, DeliveryResult>();
    try {
      const result = await strategyByName(strategyName).apply({
        docker: this.deps.docker,
        containerId: d.id,
        containerName: d.name,
        signal: d.signal,
        healthCheckTimeoutMs: d.healthCheckTimeoutMs,
        env: run.env,
        labels: run.labels,
        secretPaths: [...d.targets.map((t) => t.path), ...d.volumes.map((v) => v.destination)],
        abort: signal ?? new AbortController().signal,
        log: this.deps.log,
        restorePrevious: async () => {
          const report = await restorePreviousFiles(this.deps.planner, d.id, built, signal);
          // DSO volumes' own file sets changed in this pass: shared, rewritten by the volume engine.
          for (const unit of d.volumes) {
            if (unit.secrets.some((name) => secrets.includes(name))) report.notRestored.push(`DSO volume ${unit.volume} at ${unit.destination}: its files are shared by the containers using it and are not switched back`);
          }
          return report;
        },
        // This pass's files, into the restarted container (its queue is ours already) or its
        // replacement (through the replacement's own queue, so no other delivery into it runs at
        // the same time). A tmpfs starts empty.
        deliver: (id) => {
          const work = async () => {
            for (const target of built) deliveredInto.set(target.path, await this.deps.planner.deliver(id, target.path, target.files, { signal, marker: target.marker }));
            await this.deliverCurrentTargets(d, id, built, signal);
          };
          return id === d.id ? work() : this.deps.queue.run(`container:${id}`, work);
        },
      });
      this.rolledBack.delete(d.id);
      view.lastStrategy = { at, strategy: result.strategy, action: result.action, outcome: "ok", ...(result.detail ? { detail: result.detail } : {}) };
      this.markDelivered(d, view, built, deliveredInto, result.containerId, opts, started);
      if (result.containerId !== d.id) this.book.moved(d.id, result.containerId, view);
      this.deps.log.info("rotated secrets in container", { container: d.name, strategy: result.strategy, action: result.action });
      finished(result.strategy, result.action);
      // Every set of this pass is in the container that now serves (deferred ones only there).
      const delivered = [...new Set(built.flatMap((b) => d.targets.find((t) => t.path === b.path)?.specs.map((s) => s.name) ?? []))];
      return { container: result.containerId, action: result.action, ...(delivered.length ? { delivered } : {}) };
    } catch (error) {
      const message = describeError(error);
      view.lastStrategy = { at, strategy: strategyName, outcome: "failed", detail: message };
      if (error instanceof RollbackError) {
        this.remember(d.id, { wanted, reason: error.reason, targets: new Set(built.map((b) => `${b.path}\0${b.marker}`)) });
        this.markRolledBack(view, built, error.reason);
        this.deps.log.warn("rotation rolled back", { container: d.name, strategy: strategyName, reason: message });
      } else {
        view.error = view.error ? `${view.error}; ${message}` : message;
        this.deps.log.error("rotation strategy failed", { container: d.name, strategy: strategyName, error: message });
      }
      finished(strategyName, undefined, error);
      return { error: view.error };
    }
  }

  /** `dso ls` after a rollback: the deferred sets, and those switched back to their previous files, show `rollback: <reason>`. */
  private markRolledBack(view: ContainerView, built: BuiltTarget[], reason: string): void {
    const paths = new Set(built.filter((b) => b.deferred || b.restored).map((b) => b.path));
    for (const target of built.filter((b) => b.restored)) {
      // The container holds the previous versions again.
      const previous = this.deps.markers.read(target.previousMarker, view.status.filter((l) => l.path === target.path).map((l) => l.name));
      for (const line of view.status) if (line.path === target.path) line.actual = previous?.get(line.name);
    }
    for (const line of view.status) if (paths.has(line.path) && line.actual !== line.wanted) line.state = `rollback: ${reason}`;
    const message = `rollback: ${reason}`;
    view.error = view.error ? `${view.error}; ${message}` : message;
  }

  /** The replacement (or restarted container) holds the new files: `dso ls` says current at once. */
  private markDelivered(d: Desired, view: ContainerView, built: BuiltTarget[], delivered: Map<string, DeliveryResult>, into: string, opts: ConvergeOptions, started: number): void {
    const at = new Date().toISOString();
    for (const target of built) {
      const result = delivered.get(target.path);
      if (!result) continue;
      for (const line of view.status) {
        if (line.path !== target.path || !line.wanted) continue;
        line.actual = line.wanted;
        if (line.state === "pending: delivery") line.state = "current";
      }
      view.deliveries = [...view.deliveries.filter((x) => x.path !== target.path), { path: target.path, mode: result.mode, files: result.files, at }];
      for (const spec of d.targets.find((t) => t.path === target.path)?.specs ?? []) {
        const version = this.deps.store.get(spec.name)?.version;
        if (version) view.versions[spec.name] = version;
      }
    }
    this.reportDeferred(d, built, delivered, into, opts, started);
  }

  /** The delivery of the deferred sets, reported once the strategy ran (the converger did not). */
  private reportDeferred(d: Desired, built: BuiltTarget[], delivered: Map<string, DeliveryResult>, into: string, opts: ConvergeOptions, started: number): void {
    for (const target of built.filter((b) => b.deferred)) {
      const result = delivered.get(target.path);
      if (!result) continue;
      const names = d.targets.find((t) => t.path === target.path)?.specs.map((s) => s.name) ?? [];
      this.deps.observer?.deliveryFinished({
        container: { id: into, name: d.name },
        secrets: this.versions.versionsOf(names),
        mode: result.mode,
        path: target.path,
        trigger: opts.trigger,
        seconds: (performance.now() - started) / 1000,
        changedAt: this.versions.changedAt(names),
      });
    }
  }

  private remember(id: string, entry: RolledBack): void {
    this.rolledBack.set(id, entry);
    // Containers gone since: their entries go (the book keeps only running containers).
    for (const known of this.rolledBack.keys()) if (known !== id && !this.book.get(known)) this.rolledBack.delete(known);
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

/** What a run wants in the container: the markers of its file sets and labels (env version). */
function wantedKey(run: StrategyRequest): string {
  return JSON.stringify([run.built.map((b) => [b.path, b.marker]), run.labels]);
}
