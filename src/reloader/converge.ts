/**
 * One container brought to the wanted versions: each file target delivered when its marker is
 * not the wanted one, each DSO volume's record of what this container was told compared with the
 * volume's files, the environment checked — then the container's strategy run once, and only if
 * some secret really went from one version to another there. Called inside the container's key
 * of the work queue (reconciler.ts, inject.ts), so one container sees one pass at a time.
 */
import type { ActionReport } from "../api/contract.ts";
import type { DeliveryResult } from "../delivery/types.ts";
import { describeError, DsoError } from "../errors.ts";
import type { FetchBatch } from "../secrets/source.ts";
import { secretViews, type ContainerStatusBook, type SecretView } from "./container-status.ts";
import { ENV_VERSION_LABEL, selectionOf, type Desired, type TargetUnit } from "./desired.ts";
import { convergeEnv } from "./env-convergence.ts";
import { buildDeliveries } from "./files.ts";
import type { ConvergeOptions, ReconcilerDeps } from "./reconcile-deps.ts";
import type { SecretVersions } from "./secret-versions.ts";
import type { Selection } from "./selection.ts";
import { StrategyRunner, type BuiltTarget } from "./strategy-runner.ts";

/** Containers whose refusals (and leftover checks) are remembered; past it the oldest go. */
const MAX_REMEMBERED_REFUSALS = 10_000;

export class ContainerConverger {
  private readonly strategies: StrategyRunner;
  /** Per container, the refusals last reported: a refusal is logged and audited when it changes. */
  private readonly refusalsReported = new Map<string, string>();
  /** `<container>\0<path>` of signal targets checked once for a leftover kept version. */
  private readonly leftoversChecked = new Set<string>();

  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly book: ContainerStatusBook,
    private readonly versions: SecretVersions,
  ) {
    this.strategies = new StrategyRunner(deps, book, versions);
  }

  /** Brings one container to the wanted versions; runs its strategy once if a version changed. */
  async converge(d: Desired, batch: FetchBatch, opts: ConvergeOptions = {}): Promise<ActionReport> {
    // Replaced by a rolling rotation since the wave listed it: its replacement is served instead.
    if (this.book.replacement(d.id)) return { container: d.id, name: d.name, delivered: [] };
    const view = this.book.begin(d.id, d.name, d.strategy, d.secrets);
    this.reportRefusals(d, opts);
    const errors: string[] = [];
    const delivered: string[] = [];
    const built: BuiltTarget[] = [];
    const changed = new Set<string>();
    // The new secret lines, shown at once when complete (container-status.ts, begin).
    const lines: SecretView[] = [];

    for (const unit of d.targets) {
      const outcome = await this.convergeTarget(d, unit, batch, opts).catch((error) => {
        errors.push(`${unit.path}: ${describeError(error)}`);
        return undefined;
      });
      if (!outcome) continue;
      lines.push(...outcome.views);
      if (outcome.built?.deferred) built.push(outcome.built);
      else if (outcome.built) {
        built.push(outcome.built);
        delivered.push(...unit.specs.map((s) => s.name));
        view.deliveries = [...view.deliveries.filter((x) => x.path !== unit.path), outcome.delivery!];
        for (const spec of unit.specs) {
          const version = this.deps.store.get(spec.name)?.version;
          if (version) view.versions[spec.name] = version;
        }
      }
      errors.push(...outcome.errors);
      for (const name of outcome.changed) changed.add(name);
    }

    const seenUpdates: Array<[string, string]> = [];
    for (const unit of d.volumes) {
      const volumes = this.deps.volumes;
      if (!volumes) continue;
      try {
        const refreshStarted = performance.now();
        const filesMarker = await volumes.refresh(unit.volume, (names) => batch.values(names));
        const refreshSeconds = (performance.now() - refreshStarted) / 1000;
        const observed = await volumes.observe(unit.volume);
        const seen = observed?.seen.get(d.id);
        view.deliveries = [...view.deliveries.filter((x) => x.path !== unit.destination), { path: unit.destination, mode: "plugin", files: [], at: view.observedAt }];
        lines.push(...secretViews(this.deps, unit.secrets, unit.destination, { volume: unit.volume, mode: "plugin" }, seen ?? filesMarker));
        if (!filesMarker) continue;
        if (seen === undefined) await volumes.markSeen(unit.volume, d.id, filesMarker);
        else if (seen !== filesMarker) {
          seenUpdates.push([unit.volume, filesMarker]);
          for (const name of this.versions.changedSecrets(seen, filesMarker, unit.secrets)) changed.add(name);
          delivered.push(...unit.secrets);
          this.deps.observer?.deliveryFinished({
            container: { id: d.id, name: d.name },
            secrets: this.versions.versionsOf(unit.secrets),
            mode: "plugin",
            path: unit.destination,
            trigger: opts.trigger,
            seconds: refreshSeconds,
            changedAt: this.versions.changedAt(unit.secrets),
          });
        }
      } catch (error) {
        errors.push(`volume ${unit.volume}: ${describeError(error)}`);
      }
    }

    view.status = lines;

    const env = await convergeEnv(this.deps, this.versions, d, batch).catch((error) => {
      errors.push(`environment: ${describeError(error)}`);
      return undefined;
    });

    const problems = [...d.refusals.map((r) => r.message), ...errors];
    view.error = problems.length ? problems.join("; ") : undefined;
    if (errors.length) this.deps.log.error("delivery incomplete", { container: d.name, problems: errors.join("; ") });
    if (delivered.length) this.deps.log.info("delivered secrets to container", { container: d.name, secrets: [...new Set(delivered)].join(",") });

    const report: ActionReport = { container: d.id, name: d.name, delivered: [...new Set(delivered)], ...(view.error ? { error: view.error } : {}) };
    if (env?.recreate) {
      const envNames = d.envSpecs.map((s) => s.name);
      const run = { strategy: "rolling" as const, built, env: env.values, labels: { [ENV_VERSION_LABEL]: env.marker }, secrets: envNames };
      const started = performance.now();
      const { repeated, ...outcome } = await this.strategies.apply(d, view, run, opts);
      // The re-creation is env mode's delivery (metrics, audit, delivery_failed); a rollback of
      // an earlier pass, shown again, is not a new one.
      if (!repeated) this.deps.observer?.deliveryFinished({
        container: { id: outcome.container ?? d.id, name: d.name },
        secrets: this.versions.versionsOf(envNames),
        mode: "env",
        trigger: opts.trigger,
        seconds: (performance.now() - started) / 1000,
        changedAt: this.versions.changedAt(envNames),
        ...(outcome.error ? { error: new DsoError("DELIVERY_FAILED", outcome.error) } : {}),
      });
      return { ...report, ...outcome };
    }
    if (changed.size === 0) {
      for (const [volume, marker] of seenUpdates) await this.deps.volumes?.markSeen(volume, d.id, marker);
      return report;
    }
    const { repeated: _repeated, ...outcome } = await this.strategies.apply(d, view, { strategy: d.strategy, built, env: {}, labels: {}, secrets: [...changed] }, opts);
    // Told, whatever the outcome: a failed strategy is reported, not repeated every pass.
    for (const [volume, marker] of seenUpdates) await this.deps.volumes?.markSeen(volume, outcome.container ?? d.id, marker);
    return { ...report, ...outcome };
  }

  /**
   * A `signal` container's target found current for the first time in this agent's life: a
   * previous version kept for a rollback by an agent that died in the health window is dropped
   * (the container's `..data` says which version it runs; that one stays).
   */
  private async pruneLeftoverOnce(d: Desired, path: string, signal?: AbortSignal): Promise<void> {
    if (d.strategy !== "signal" || !this.deps.planner.prune) return;
    const key = `${d.id}\0${path}`;
    if (this.leftoversChecked.has(key)) return;
    this.leftoversChecked.add(key);
    if (this.leftoversChecked.size > MAX_REMEMBERED_REFUSALS) this.leftoversChecked.delete(this.leftoversChecked.values().next().value!);
    await this.deps.planner.prune(d.id, path, signal).catch((error: unknown) => {
      this.deps.log.warn("could not remove an earlier version left in a container", { container: d.name, path, error: describeError(error) });
    });
  }

  /**
   * Secrets the container asked for and may not have: one error line each and a refused delivery
   * (audit event, dso_deliveries_total, delivery_failed), when they first appear or change.
   */
  private reportRefusals(d: Desired, opts: ConvergeOptions): void {
    const text = d.refusals.map((r) => r.message).join("\n");
    if (!text) return void this.refusalsReported.delete(d.id);
    if (this.refusalsReported.get(d.id) === text) return;
    this.refusalsReported.delete(d.id);
    this.refusalsReported.set(d.id, text);
    if (this.refusalsReported.size > MAX_REMEMBERED_REFUSALS) this.refusalsReported.delete(this.refusalsReported.keys().next().value!);
    for (const refusal of d.refusals) {
      this.deps.log.error(refusal.message);
      this.deps.observer?.deliveryFinished({
        container: { id: d.id, name: d.name },
        secrets: refusal.secrets.map((name) => ({ name })),
        mode: "none",
        trigger: opts.trigger,
        seconds: 0,
        error: new DsoError("DELIVERY_REFUSED", refusal.message),
      });
    }
  }

  private async convergeTarget(d: Desired, unit: TargetUnit, batch: FetchBatch, opts: ConvergeOptions) {
    const names = unit.specs.map((s) => s.name);
    const observed = await this.deps.planner.readMarker(d.id, unit.path, opts.signal);
    const views = (marker?: string) => secretViews(this.deps, names, unit.path, { mode: observed.mode }, marker);
    const known = this.versions.fingerprintsOf(names, d.id);
    if (!opts.force && known && this.deps.markers.matches(observed.marker, known)) {
      await this.pruneLeftoverOnce(d, unit.path, opts.signal);
      return { views: views(observed.marker), changed: [] as string[], errors: [] };
    }
    const { values, errors } = await batch.values(names, d.id);
    const selection: Selection = { ...selectionOf(d), secrets: unit.specs };
    const files = buildDeliveries(selection, values);
    const group = files.groups.find((g) => g.path === unit.path);
    const problems = [...errors, ...files.errors];
    if (!group || problems.length) return { views: views(observed.marker), changed: [] as string[], errors: problems.length ? problems : ["no value"] };
    const marker = this.deps.markers.marker(group.fingerprints);
    if (!opts.force && marker === observed.marker) {
      await this.pruneLeftoverOnce(d, unit.path, opts.signal);
      return { views: views(marker), changed: [] as string[], errors: [] };
    }
    const changed = this.versions.changedSecrets(observed.marker, marker, names);
    // signal: these versions were rolled back here (unhealthy after the signal); not delivered
    // again every pass, only on the next change or `dso rotate` (strategy-runner.ts says so).
    const retry = opts.trigger === "rotate" || opts.trigger === "inject";
    if (!opts.force && !retry && d.strategy === "signal" && this.strategies.isRolledBack(d.id, unit.path, marker)) {
      return { views: views(observed.marker), changed, errors: [], built: { path: unit.path, files: group.files, marker, deferred: true } };
    }
    // rolling: the running container keeps its files until a replacement with the new ones is
    // healthy (strategy-runner.ts delivers them there), so a failed rotation rolls back.
    if (!opts.force && d.strategy === "rolling" && changed.length > 0) {
      return { views: views(observed.marker), changed, errors: [], built: { path: unit.path, files: group.files, marker, deferred: true } };
    }
    const keepPrevious = d.strategy === "signal" && changed.length > 0;
    const started = performance.now();
    const report = (mode: string, error?: unknown) =>
      this.deps.observer?.deliveryFinished({
        container: { id: d.id, name: d.name },
        secrets: this.versions.versionsOf(names),
        mode,
        path: unit.path,
        trigger: opts.trigger,
        seconds: (performance.now() - started) / 1000,
        changedAt: this.versions.changedAt(names),
        ...(error === undefined ? {} : { error }),
      });
    let result: DeliveryResult;
    try {
      // signal: the previous version stays until the strategy proved the new one (previous-files.ts).
      result = await this.deps.planner.deliver(d.id, unit.path, group.files, { signal: opts.signal, marker, keepPrevious });
    } catch (error) {
      report(observed.mode, error);
      throw error;
    }
    report(result.mode);
    return {
      views: views(marker),
      changed,
      errors: [],
      built: { path: unit.path, files: group.files, marker, previousMarker: observed.marker, ...(result.kept ? { kept: result.kept } : {}), ...(result.notKept ? { notKept: result.notKept } : {}) },
      delivery: { path: unit.path, mode: result.mode, files: result.files, at: new Date().toISOString() },
    };
  }
}
