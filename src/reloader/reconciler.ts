/**
 * The reconciler: for every running container DSO serves it compares the version it wants there
 * (the current fingerprints) with the version actually there (read back from the container: the
 * marker beside `..data`, or the DSO volume driver's record of what that container was told),
 * delivers when they differ, and then runs the container's strategy once — but only when the
 * container really went from one version to another (not on a first delivery, after an agent
 * restart, or for an up-to-date container). Who noticed a change first (poll, webhook, Mount,
 * `dso rotate`, a timer) does not matter: every trigger is a wave over the containers concerned.
 *
 * Parts: desired.ts (what is wanted), the delivery planner (what is there, and writing it),
 * volumes.ts (DSO volumes), strategies/ (what to do after), container-status.ts (what `dso ls`
 * shows). Work for one container runs through the keyed queue, one at a time.
 */
import type Dockerode from "dockerode";
import type { ActionReport, InjectReport } from "../api/contract.ts";
import type { AuditTrigger } from "../audit/audit-log.ts";
import type { DsoConfig, SecretSpec } from "../config/types.ts";
import type { DeliveryPlanner } from "../delivery/planner.ts";
import type { DeliveryResult, SecretFile } from "../delivery/types.ts";
import { describeError, DsoError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { FetchBatch, type SecretSource } from "../secrets/source.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import type { KeyedQueue } from "../util/keyed-queue.ts";
import { mapLimit } from "../util/map-limit.ts";
import { ContainerStatusBook, type ContainerView, type SecretView } from "./container-status.ts";
import { desiredFor, ENV_VERSION_LABEL, factsFromList, isSwarmTask, volumeSecretSpec, type Desired, type TargetUnit } from "./desired.ts";
import { buildDeliveries, groupByTarget } from "./files.ts";
import { ImageLabels } from "./labels.ts";
import { Quiescence } from "./quiescence.ts";
import { implicitSecretSpec, type Selection } from "./selection.ts";
import { strategyByName } from "./strategies/index.ts";
import { NEXT_SUFFIX } from "./strategies/rolling.ts";
import type { DsoVolumes } from "./volumes.ts";

/** Changes closer together than this become one wave; a wave waits at most MAX after the first. */
export const DEBOUNCE_MS = 300;
export const DEBOUNCE_MAX_MS = 2_000;
/** Container starts closer together than this are reconciled in one wave (one fetch). */
export const START_BATCH_MS = 50;
/** Containers reconciled at once: enough to overlap Docker round trips, few enough for 2 cores. */
export const ROTATION_CONCURRENCY = 10;

export type { ActionReport, InjectReport };

type ContainerRef = { id: string; name?: string };
type SecretVersion = { name: string; version?: string };

/** What the reconciler reports (the agent's Observer: metrics, audit trail, notifications). */
export interface ReconcileObserver {
  deliveryFinished(p: { container: ContainerRef; secrets: SecretVersion[]; mode: string; path?: string; trigger?: AuditTrigger; seconds: number; changedAt?: number; error?: unknown }): void;
  strategyFinished(p: { container: ContainerRef; strategy: string; action?: string; secrets?: SecretVersion[]; seconds: number; error?: unknown }): void;
  rotationFinished(p: { container: ContainerRef; secret: SecretVersion; provider?: string; strategy: string; trigger?: AuditTrigger; error?: unknown }): void;
  reconcilePass(p: { seconds: number; error?: unknown }): void;
  forgetSecret(name: string): void;
}

export interface ReconcilerDeps {
  docker: Dockerode;
  store: SecretStore;
  source: SecretSource;
  /** Reads and writes containers' file sets (the delivery planner; a fake in unit tests). */
  planner: Pick<DeliveryPlanner, "readMarker" | "deliver" | "forget">;
  markers: VersionMarkers;
  volumes?: Pick<DsoVolumes, "optionsOf" | "refresh" | "observe" | "markSeen" | "syncUsers">;
  queue: KeyedQueue;
  log: FieldLogger;
  config: () => DsoConfig;
  /** Why a secret has no fingerprint yet, in words (e.g. "first poll in 4m"). */
  pendingReason?: (secret: string) => string;
  observer?: ReconcileObserver;
  /** Secrets used outside containers (Swarm services) that a full pass must not forget. */
  usedElsewhere?: () => Iterable<string>;
}

interface WaveOptions {
  /** Only containers using one of these secrets. */
  only?: ReadonlySet<string>;
  signal?: AbortSignal;
  /** A full pass: also drop records of containers and secrets no longer in use. */
  full?: boolean;
  /** Fetch the `only` secrets first, whatever is known (`dso rotate`): a change shows up now. */
  refresh?: boolean;
  /** What started the wave, for the audit trail. */
  trigger?: AuditTrigger;
}

interface ConvergeOptions {
  signal?: AbortSignal;
  trigger?: AuditTrigger;
  /** Deliver every file set even when it is current (`dso inject`). */
  force?: boolean;
}

/** A file set built for delivery in this pass. */
interface BuiltTarget {
  path: string;
  files: SecretFile[];
  marker: string;
}

export class Reconciler {
  readonly book = new ContainerStatusBook();
  private readonly images: ImageLabels;
  private readonly changes: Quiescence<string>;
  private readonly starts: Quiescence<string>;
  private readonly waves = new Set<Promise<unknown>>();
  /** What announced the pending changes first (poll, webhook, mount, ...). */
  private changeTrigger?: AuditTrigger;
  /** Label warnings already logged, per container: every wave would repeat them. */
  private readonly warned = new Map<string, Set<string>>();

  constructor(private readonly deps: ReconcilerDeps) {
    this.images = new ImageLabels(deps.docker, deps.log);
    this.changes = new Quiescence(DEBOUNCE_MS, DEBOUNCE_MAX_MS, (names) => {
      const trigger = this.changeTrigger;
      this.changeTrigger = undefined;
      this.track(this.reconcileAll({ only: new Set(names), trigger: trigger ?? "poll" }));
    });
    this.starts = new Quiescence(START_BATCH_MS, START_BATCH_MS * 4, (ids) => this.track(this.reconcileIds(ids, undefined, "start")));
  }

  private track(wave: Promise<unknown>): void {
    const tracked = wave.catch((error) => this.deps.log.error("reconcile failed", { error: describeError(error) }));
    this.waves.add(tracked);
    void tracked.finally(() => this.waves.delete(tracked));
  }

  list(): ContainerView[] {
    return this.book.list();
  }

  /** Views of the containers that use any of the secrets (for `dso plan`). */
  affectedBy(names: string[]): ContainerView[] {
    const set = new Set(names);
    return this.list().filter((c) => c.secrets.some((s) => set.has(s)));
  }

  /** Resolves when no wave is waiting or running (for SIGTERM and tests). */
  async idle(): Promise<void> {
    while (this.changes.waiting || this.starts.waiting || this.waves.size > 0) {
      if (this.changes.waiting || this.starts.waiting) await Bun.sleep(START_BATCH_MS);
      await Promise.all([...this.waves]);
    }
    await this.deps.queue.idle();
  }

  stop(): void {
    this.changes.cancel();
    this.starts.cancel();
  }

  /** Secrets changed (poll, fetch, webhook): debounce, then reconcile the containers using them. */
  secretsChanged(names: string[], trigger: AuditTrigger = "poll"): void {
    this.changeTrigger ??= trigger;
    this.changes.add(names);
  }

  /** Containers started (or must be looked at again): reconcile them soon, batched. */
  containersChanged(ids: string[]): void {
    this.starts.add(ids);
  }

  forget(containerId: string): void {
    this.warned.delete(containerId);
    this.book.forget(containerId);
    this.images.forget(containerId);
    this.deps.planner.forget(containerId);
  }

  /** One wave over every running container (or those using `only`): one list call, one fetch. */
  async reconcileAll(opts: WaveOptions = {}): Promise<ActionReport[]> {
    const started = performance.now();
    try {
      const listedAt = Date.now();
      const running = await this.deps.docker.listContainers({ filters: { status: ["running"] } });
      if (opts.full || !opts.only) await this.syncVolumeUsers(running, listedAt);
      const reports = await this.wave(running, { trigger: "reconcile", ...opts });
      if (opts.full || !opts.only) this.book.retain(new Set(running.map((c) => c.Id)));
      if (opts.full) this.deps.observer?.reconcilePass({ seconds: (performance.now() - started) / 1000 });
      return reports;
    } catch (error) {
      if (opts.full) this.deps.observer?.reconcilePass({ seconds: (performance.now() - started) / 1000, error });
      throw error;
    }
  }

  /** A wave over the named containers only. */
  async reconcileIds(ids: string[], signal?: AbortSignal, trigger: AuditTrigger = "sync"): Promise<ActionReport[]> {
    if (ids.length === 0) return [];
    const running = await this.deps.docker.listContainers({ filters: { id: ids, status: ["running"] } });
    return this.wave(running, { signal, trigger });
  }

  private async syncVolumeUsers(running: Dockerode.ContainerInfo[], listedAt: number): Promise<void> {
    // Every named volume in use, whatever its driver's name: the driver looks up only its own.
    const users = new Map<string, Set<string>>();
    for (const c of running) {
      for (const m of c.Mounts ?? []) {
        if (m.Type !== "volume" || !m.Name) continue;
        users.set(m.Name, (users.get(m.Name) ?? new Set()).add(c.Id));
      }
    }
    await this.deps.volumes?.syncUsers(users, listedAt);
  }

  private async desiredOf(entry: Dockerode.ContainerInfo): Promise<Desired | undefined> {
    if (isSwarmTask(entry.Labels)) return undefined; // served through its service (swarm.ts)
    const name = (entry.Names?.[0] ?? entry.Id).replace(/^\//, "");
    // A rolling replacement still starting belongs to the strategy that delivers into it.
    if (name.includes(NEXT_SUFFIX)) return undefined;
    const labels = await this.images.own(entry.Id, name, entry.ImageID, entry.Labels);
    const { desired, warnings } = desiredFor(factsFromList(entry, labels), {
      config: this.deps.config(),
      volumeOptions: (volume) => this.deps.volumes?.optionsOf(volume),
    });
    const seen = this.warned.get(entry.Id) ?? new Set<string>();
    for (const warning of warnings) if (!seen.has(warning)) this.deps.log.warn(warning);
    this.warned.set(entry.Id, new Set(warnings));
    return desired;
  }

  private async wave(entries: Dockerode.ContainerInfo[], opts: WaveOptions): Promise<ActionReport[]> {
    const wanted: Desired[] = [];
    for (const entry of entries) {
      const desired = await this.desiredOf(entry);
      if (!desired) {
        this.book.forget(entry.Id);
        continue;
      }
      if (opts.only && !desired.secrets.some((s) => opts.only!.has(s))) continue;
      wanted.push(desired);
    }
    this.ensureSpecs(wanted);
    if (opts.full) this.retainSecrets(wanted);
    const batch = new FetchBatch(this.deps.source, new Set(wanted.flatMap((d) => d.secrets)), opts.signal);
    try {
      if (opts.refresh && opts.only) await batch.values([...opts.only]);
      return await mapLimit(wanted, ROTATION_CONCURRENCY, (d) =>
        this.deps.queue.run(`container:${d.id}`, () =>
          this.converge(d, batch, { signal: opts.signal, trigger: opts.trigger }).catch((error) => ({ container: d.id, name: d.name, delivered: [], error: describeError(error) })),
        ),
      );
    } finally {
      batch.release();
    }
  }

  private ensureSpecs(wanted: Desired[]): void {
    const config = this.deps.config();
    for (const d of wanted) {
      for (const spec of d.selection?.secrets ?? []) this.deps.store.ensure(spec);
      for (const name of d.volumes.flatMap((unit) => unit.secrets)) {
        const spec = volumeSecretSpec(name, config);
        if (spec) this.deps.store.ensure(spec);
      }
    }
  }

  /** Secrets only labels or volumes named, and nothing running names any more, are forgotten. */
  private retainSecrets(wanted: Desired[]): void {
    const inUse = new Set([...wanted.flatMap((d) => d.secrets), ...(this.deps.usedElsewhere?.() ?? [])]);
    const dropped = this.deps.store.retain(inUse);
    for (const name of dropped) this.deps.observer?.forgetSecret(name);
    if (dropped.length) this.deps.log.info("forgot secrets no container uses any more", { secrets: dropped.join(",") });
  }

  private fingerprintsOf(names: readonly string[]): Record<string, string> | undefined {
    const out: Record<string, string> = {};
    for (const name of names) {
      const fp = this.deps.store.get(name)?.fingerprint;
      if (!fp) return undefined;
      out[name] = fp;
    }
    return out;
  }

  /** The secrets a container went from one version to another of (its strategy is due). */
  private changedSecrets(before: string | undefined, after: string, names: readonly string[]): string[] {
    const old = this.deps.markers.read(before, names);
    const now = this.deps.markers.read(after, names);
    if (!old || !now) return [];
    return names.filter((n) => old.has(n) && now.has(n) && old.get(n) !== now.get(n));
  }

  /** Names with a short version for the audit trail: the provider's id, else the keyed token. */
  private versionsOf(names: readonly string[]): Array<{ name: string; version?: string }> {
    return names.map((name) => {
      const state = this.deps.store.get(name);
      const version = state?.version ?? (state?.fingerprint ? this.deps.markers.token(name, state.fingerprint) : undefined);
      return { name, ...(version ? { version } : {}) };
    });
  }

  /** When the newest of these secrets was seen changing (ms), for change→delivered latency. */
  private changedAt(names: readonly string[]): number | undefined {
    const times = names.map((n) => this.deps.store.get(n)?.lastChangeAt).filter((t) => t !== undefined).map((t) => Date.parse(t));
    return times.length ? Math.max(...times) : undefined;
  }

  private secretView(name: string, path: string, extra: Partial<SecretView>, actualMarker?: string): SecretView {
    const state = this.deps.store.get(name);
    const fp = state?.fingerprint;
    const wanted = fp ? this.deps.markers.token(name, fp) : undefined;
    const actual = this.deps.markers.read(actualMarker, [name])?.get(name);
    let status: string;
    if (state?.stale) status = `stale: provider ${state.spec.provider} unavailable since ${shortTime(state.staleSince)}`;
    else if (!wanted) status = `pending: ${this.deps.pendingReason?.(name) ?? "first poll"}`;
    else if (actual === wanted) status = "current";
    else status = "pending: delivery";
    return { name, path, wanted, actual, ...(state?.version ? { version: state.version } : {}), state: status, ...extra };
  }

  /** Brings one container to the wanted versions; runs its strategy once if a version changed. */
  async converge(d: Desired, batch: FetchBatch, opts: ConvergeOptions = {}): Promise<ActionReport> {
    const view = this.book.begin(d.id, d.name, d.strategy, d.secrets);
    const errors: string[] = [];
    const delivered: string[] = [];
    const built: BuiltTarget[] = [];
    const changed = new Set<string>();

    for (const unit of d.targets) {
      const outcome = await this.convergeTarget(d, unit, batch, opts).catch((error) => {
        errors.push(`${unit.path}: ${describeError(error)}`);
        return undefined;
      });
      if (!outcome) continue;
      view.status.push(...outcome.views);
      if (outcome.built) {
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
        const filesMarker = await volumes.refresh(unit.volume, (names) => batch.values(names));
        const observed = await volumes.observe(unit.volume);
        const seen = observed?.seen.get(d.id);
        view.deliveries = [...view.deliveries.filter((x) => x.path !== unit.destination), { path: unit.destination, mode: "plugin", files: [], at: view.observedAt }];
        for (const name of unit.secrets) view.status.push(this.secretView(name, unit.destination, { volume: unit.volume, mode: "plugin" }, seen ?? filesMarker));
        if (!filesMarker) continue;
        if (seen === undefined) await volumes.markSeen(unit.volume, d.id, filesMarker);
        else if (seen !== filesMarker) {
          seenUpdates.push([unit.volume, filesMarker]);
          for (const name of this.changedSecrets(seen, filesMarker, unit.secrets)) changed.add(name);
          delivered.push(...unit.secrets);
          this.deps.observer?.deliveryFinished({
            container: { id: d.id, name: d.name },
            secrets: this.versionsOf(unit.secrets),
            mode: "plugin",
            path: unit.destination,
            trigger: opts.trigger,
            seconds: 0,
            changedAt: this.changedAt(unit.secrets),
          });
        }
      } catch (error) {
        errors.push(`volume ${unit.volume}: ${describeError(error)}`);
      }
    }

    const env = await this.convergeEnv(d, batch).catch((error) => {
      errors.push(`environment: ${describeError(error)}`);
      return undefined;
    });

    view.error = errors.length ? errors.join("; ") : undefined;
    if (errors.length) this.deps.log.error("delivery incomplete", { container: d.name, problems: view.error });
    if (delivered.length) this.deps.log.info("delivered secrets to container", { container: d.name, secrets: [...new Set(delivered)].join(",") });

    const report: ActionReport = { container: d.id, name: d.name, delivered: [...new Set(delivered)], ...(view.error ? { error: view.error } : {}) };
    if (env?.recreate) {
      this.deps.log.info("re-creating container to set its secret environment variables", { container: d.name });
      const envNames = d.envSpecs.map((s) => s.name);
      return { ...report, ...(await this.applyStrategy(d, view, "rolling", built, env.values, { [ENV_VERSION_LABEL]: env.marker }, opts, envNames)) };
    }
    if (changed.size === 0) {
      for (const [volume, marker] of seenUpdates) await this.deps.volumes?.markSeen(volume, d.id, marker);
      return report;
    }
    const outcome = await this.applyStrategy(d, view, d.strategy, built, {}, {}, opts, [...changed]);
    // Told, whatever the outcome: a failed strategy is reported, not repeated every pass.
    for (const [volume, marker] of seenUpdates) await this.deps.volumes?.markSeen(volume, outcome.container ?? d.id, marker);
    return { ...report, ...outcome };
  }

  private async convergeTarget(d: Desired, unit: TargetUnit, batch: FetchBatch, opts: ConvergeOptions) {
    const names = unit.specs.map((s) => s.name);
    const observed = await this.deps.planner.readMarker(d.id, unit.path, opts.signal);
    const views = (marker?: string) => names.map((n) => this.secretView(n, unit.path, { mode: observed.mode }, marker));
    const known = this.fingerprintsOf(names);
    if (!opts.force && known && this.deps.markers.matches(observed.marker, known)) return { views: views(observed.marker), changed: [] as string[], errors: [] };
    const { values, errors } = await batch.values(names);
    const selection: Selection = { ...(d.selection ?? emptySelection(d)), secrets: unit.specs };
    const files = buildDeliveries(selection, values);
    const group = files.groups.find((g) => g.path === unit.path);
    const problems = [...errors, ...files.errors];
    if (!group || problems.length) return { views: views(observed.marker), changed: [] as string[], errors: problems.length ? problems : ["no value"] };
    const marker = this.deps.markers.marker(group.fingerprints);
    if (!opts.force && marker === observed.marker) return { views: views(marker), changed: [] as string[], errors: [] };
    const started = performance.now();
    const report = (mode: string, error?: unknown) =>
      this.deps.observer?.deliveryFinished({
        container: { id: d.id, name: d.name },
        secrets: this.versionsOf(names),
        mode,
        path: unit.path,
        trigger: opts.trigger,
        seconds: (performance.now() - started) / 1000,
        changedAt: this.changedAt(names),
        ...(error === undefined ? {} : { error }),
      });
    let result: DeliveryResult;
    try {
      result = await this.deps.planner.deliver(d.id, unit.path, group.files, { signal: opts.signal, marker });
    } catch (error) {
      report(observed.mode, error);
      throw error;
    }
    report(result.mode);
    return {
      views: views(marker),
      changed: this.changedSecrets(observed.marker, marker, names),
      errors: [],
      built: { path: unit.path, files: group.files, marker },
      delivery: { path: unit.path, mode: result.mode, files: result.files, at: new Date().toISOString() },
    };
  }

  /**
   * Env injection: the container's variables are set at creation, so a container whose
   * `dso.env-version` label is not the wanted marker gets the values checked and, when they
   * differ, is re-created (rolling) with them and the new label.
   */
  private async convergeEnv(d: Desired, batch: FetchBatch): Promise<{ recreate: boolean; values: Record<string, string>; marker: string } | undefined> {
    if (d.envSpecs.length === 0) return undefined;
    const names = d.envSpecs.map((s) => s.name);
    const known = this.fingerprintsOf(names);
    if (known && this.deps.markers.matches(d.envMarker, known)) return undefined;
    const { values, errors } = await batch.values(names);
    if (errors.length) throw new DsoError("PROVIDER_UNAVAILABLE", errors.join("; "));
    const built = buildDeliveries({ ...(d.selection ?? emptySelection(d)), secrets: d.envSpecs }, values);
    if (built.errors.length) throw new DsoError("DELIVERY_FAILED", built.errors.join("; "));
    const fingerprints = Object.fromEntries(names.map((n) => [n, values.get(n)!.fingerprint]));
    const marker = this.deps.markers.marker(fingerprints);
    if (marker === d.envMarker) return undefined;
    const inspect = await this.deps.docker.getContainer(d.id).inspect();
    const have = new Set(inspect.Config.Env ?? []);
    const recreate = Object.entries(built.env).some(([k, v]) => !have.has(`${k}=${v}`));
    return { recreate, values: built.env, marker };
  }

  /** Runs a strategy after the files are in place; records the run on the container's view. */
  private async applyStrategy(
    d: Desired,
    view: ContainerView,
    strategyName: Desired["strategy"],
    built: BuiltTarget[],
    env: Record<string, string>,
    labels: Record<string, string>,
    opts: ConvergeOptions,
    secrets: readonly string[],
  ): Promise<Partial<ActionReport>> {
    const signal = opts.signal;
    const at = new Date().toISOString();
    const started = performance.now();
    const container = { id: d.id, name: d.name };
    const finished = (strategy: string, action?: string, error?: unknown) => {
      const extra = error === undefined ? {} : { error };
      this.deps.observer?.strategyFinished({ container, strategy, ...(action ? { action } : {}), secrets: this.versionsOf(secrets), seconds: (performance.now() - started) / 1000, ...extra });
      for (const secret of this.versionsOf(secrets)) {
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
        env,
        labels,
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
        const group = buildDeliveries({ ...(d.selection ?? emptySelection(d)), secrets: unit.specs }, values).groups.find((g) => g.path === unit.path);
        if (group) await this.deps.planner.deliver(id, unit.path, group.files, { signal, marker: this.deps.markers.marker(group.fingerprints) });
      }
    } finally {
      batch.release();
    }
  }

  /**
   * One-off delivery (`dso inject`): the container's own secrets plus any named ones, now, without
   * a strategy. Reports names, versions and modes, never values.
   */
  async inject(container: string, names: string[] = [], signal?: AbortSignal): Promise<InjectReport> {
    const inspect = await this.deps.docker
      .getContainer(container)
      .inspect()
      .catch(() => {
        throw new DsoError("BAD_REQUEST", `no such container: ${container}`);
      });
    if (!inspect.State.Running) throw new DsoError("BAD_REQUEST", `container ${container} is not running`);
    const [entry] = await this.deps.docker.listContainers({ filters: { id: [inspect.Id] } });
    const config = this.deps.config();
    const base = (entry ? await this.desiredOf(entry) : undefined) ?? emptyDesired(inspect, config);
    const extra = names.map((n) => config.secrets.find((s) => s.name === n) ?? implicitSecretSpec(n, config));
    const unknown = names.filter((_, i) => !extra[i]);
    if (unknown.length) throw new DsoError("SECRET_NOT_FOUND", `unknown secret(s): ${unknown.join(", ")}; list them in secrets[] of dso.yaml`);
    const selection = { ...(base.selection ?? emptySelection(base)) };
    // Files only: variables need a re-created container, which is a strategy, not an injection.
    const specs = [...(selection.secrets ?? []).filter((s) => !names.includes(s.name)), ...extra.map((s) => s!)].filter((s) => s.inject.type === "file");
    const desired = withSpecs(base, selection, specs);
    if (desired.targets.length === 0 && desired.volumes.length === 0 && desired.envSpecs.length === 0) {
      throw new DsoError("BAD_REQUEST", `container ${desired.name} has no DSO secrets; name some with --secret`);
    }
    for (const spec of specs) this.deps.store.ensure(spec);
    const batch = new FetchBatch(this.deps.source, new Set(desired.secrets), signal);
    try {
      const report = await this.deps.queue.run(`container:${desired.id}`, () => this.converge({ ...desired, strategy: "none" }, batch, { signal, force: true, trigger: "inject" }));
      const view = this.book.get(desired.id);
      return {
        container: desired.id,
        name: desired.name,
        deliveries: view?.deliveries ?? [],
        secrets: specs.map((s) => ({ name: s.name, version: this.deps.store.get(s.name)?.version, delivered: report.delivered.includes(s.name) })),
        ...(report.error ? { error: report.error } : {}),
      };
    } finally {
      batch.release();
    }
  }
}

function shortTime(iso: string | undefined): string {
  return iso ? iso.slice(11, 16) : "?";
}

function emptySelection(d: Pick<Desired, "id" | "name" | "strategy" | "signal" | "healthCheckTimeoutMs">): Selection {
  return { containerId: d.id, containerName: d.name, secrets: [], strategy: d.strategy, signal: d.signal, files: {}, healthCheckTimeoutMs: d.healthCheckTimeoutMs };
}

function emptyDesired(inspect: Dockerode.ContainerInspectInfo, config: DsoConfig): Desired {
  return {
    id: inspect.Id,
    name: inspect.Name.replace(/^\//, ""),
    targets: [],
    envSpecs: [],
    volumes: [],
    strategy: "none",
    signal: config.agent.rotation.signal,
    healthCheckTimeoutMs: config.agent.rotation.healthCheckTimeoutMs,
    secrets: [],
  };
}

/** The desired state of a container with its file and env secrets replaced by `specs`. */
function withSpecs(base: Desired, selection: Selection, specs: SecretSpec[]): Desired {
  const sel = { ...selection, secrets: specs };
  const byPath = groupByTarget(sel, specs);
  return {
    ...base,
    selection: sel,
    targets: [...byPath].map(([path, s]) => ({ path, specs: s })),
    envSpecs: specs.filter((s) => s.inject.type === "env"),
    secrets: [...new Set([...specs.map((s) => s.name), ...base.volumes.flatMap((v) => v.secrets)])],
  };
}
