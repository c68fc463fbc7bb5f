/**
 * The reconciler: for every running container DSO serves it compares the version it wants there
 * (the current fingerprints) with the version actually there (read back from the container: the
 * marker beside `..data`, or the DSO volume driver's record of what that container was told),
 * delivers when they differ, and then runs the container's strategy once — but only when the
 * container really went from one version to another (not on a first delivery, after an agent
 * restart, or for an up-to-date container). Who noticed a change first (poll, webhook, Mount,
 * `dso rotate`, a timer) does not matter: every trigger is a wave over the containers concerned.
 *
 * This file runs waves: which containers, one list call, one fetch batch, each container through
 * its key of the work queue. The parts: desired.ts (what is wanted), converge.ts (one container),
 * strategy-runner.ts and strategies/ (what to do after), env-convergence.ts (variables),
 * volumes.ts (DSO volumes), container-status.ts (what `dso ls` shows), wave-scheduler.ts (when
 * waves run), labels.ts (the image label cache), inject.ts (`dso inject`).
 */
import type Dockerode from "dockerode";
import type { ActionReport, InjectReport } from "../api/contract.ts";
import type { AuditTrigger } from "../audit/audit-log.ts";
import { describeError } from "../errors.ts";
import { FetchBatch } from "../secrets/source.ts";
import { mapLimit } from "../util/map-limit.ts";
import { ContainerStatusBook, type ContainerView } from "./container-status.ts";
import { ContainerConverger } from "./converge.ts";
import { desiredFor, factsFromList, isSwarmTask, volumeSecretSpec, type Desired } from "./desired.ts";
import { injectIntoContainer } from "./inject.ts";
import { ImageLabels } from "./labels.ts";
import type { ReconcilerDeps } from "./reconcile-deps.ts";
import { SecretVersions } from "./secret-versions.ts";
import { NEXT_SUFFIX } from "./strategies/rolling.ts";
import { WaveScheduler } from "./wave-scheduler.ts";

export type { ConvergeOptions, ReconcileObserver, ReconcilerDeps } from "./reconcile-deps.ts";
export type { ActionReport, InjectReport };

/** Containers reconciled at once: enough to overlap Docker round trips, few enough for 2 cores. */
export const ROTATION_CONCURRENCY = 10;
/**
 * After a wave over at least this many containers the agent runs a full garbage collection
 * (~25-75 ms with 1,000 containers). JSC collects lazily: a wave's garbage (~4 KiB per delivery)
 * piled up over waves, and RSS went 117 -> 214 MiB in 10 waves over 1,000 containers while the
 * live heap stayed at 44 MiB (bench/scale.ts; docs/reliability.md).
 */
export const COLLECT_AFTER_WAVE_OF = 100;
/** At most one such collection in this long: back-to-back waves pay it once (~0.5 % of a core). */
export const COLLECT_MIN_INTERVAL_MS = 10_000;

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

export class Reconciler {
  readonly book = new ContainerStatusBook();
  /** Debounced triggers: secrets changed, containers started. */
  readonly waves: WaveScheduler;
  private readonly images: ImageLabels;
  private readonly converger: ContainerConverger;
  /** Label warnings already logged, per container: every wave would repeat them. */
  private readonly warned = new Map<string, Set<string>>();
  private lastCollect = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: ReconcilerDeps) {
    this.images = new ImageLabels(deps.docker, deps.log);
    this.converger = new ContainerConverger(deps, this.book, new SecretVersions(deps.store, deps.markers, () => deps.source.dynamic()));
    this.waves = new WaveScheduler(
      {
        secrets: (only, trigger) => this.reconcileAll({ only, trigger }),
        containers: (ids) => this.reconcileIds(ids, undefined, "start"),
      },
      deps.log,
    );
  }

  list(): ContainerView[] {
    return this.book.list();
  }

  /** Resolves when no wave is waiting or running (for SIGTERM and tests). */
  async idle(): Promise<void> {
    await this.waves.idle();
    await this.deps.queue.idle();
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
      // A paused container still has its volumes mounted: it counts as a volume's user (issue 18, 10a).
      const listed = await this.deps.docker.listContainers({ filters: { status: ["running", "paused"] } });
      const running = listed.filter((c) => c.State !== "paused");
      if (opts.full || !opts.only) await this.syncVolumeUsers(listed, listedAt);
      const reports = await this.wave(running, { trigger: "reconcile", ...opts });
      if (opts.full || !opts.only) this.book.retain(new Set(listed.map((c) => c.Id)));
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

  /** `dso inject`: see inject.ts. */
  inject(container: string, names: string[] = [], signal?: AbortSignal): Promise<InjectReport> {
    const deps = { ...this.deps, desiredOf: (entry: Dockerode.ContainerInfo) => this.desiredOf(entry), converger: this.converger, book: this.book };
    return injectIntoContainer(deps, container, names, signal);
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
          this.converger.converge(d, batch, { signal: opts.signal, trigger: opts.trigger }).catch((error) => ({ container: d.id, name: d.name, delivered: [], error: describeError(error) })),
        ),
      );
    } finally {
      batch.release();
      this.collectAfter(wanted.length);
    }
  }

  private collectAfter(containers: number): void {
    if (containers < COLLECT_AFTER_WAVE_OF || performance.now() - this.lastCollect < COLLECT_MIN_INTERVAL_MS) return;
    this.lastCollect = performance.now();
    Bun.gc(true);
  }

  private ensureSpecs(wanted: Desired[]): void {
    const config = this.deps.config();
    for (const d of wanted) {
      for (const spec of d.selection?.secrets ?? []) this.deps.store.ensure(spec);
      // Volumes and `dso up`'s dso:// references (env specs of their own) name secrets too.
      for (const name of [...d.volumes.flatMap((unit) => unit.secrets), ...d.envSpecs.map((s) => s.name)]) {
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
}
