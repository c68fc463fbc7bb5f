/**
 * Swarm mode: a service's secrets are Swarm secrets, and rotation is a service update that swaps
 * them, so Swarm rolls the change out across hosts with its own update engine. DSO creates one
 * versioned Swarm secret per file (its name carries a keyed token of the provider fingerprints,
 * VersionMarkers.swarmToken, never anything a guess of the value could be checked against), points
 * the service at the new ones, and removes its old versions once nothing uses them. One agent on
 * a manager serves the whole cluster: the manager's task list covers every node, so a version is
 * kept while a task on any host still runs with it. A new host key (a reboot) gives every file new
 * names once: one service update each, never a missed change.
 */
import type { FieldLogger } from "../log/logger.ts";
import { posix } from "node:path";
import type Dockerode from "dockerode";
import type { DsoConfig } from "../config/types.ts";
import { describeError } from "../errors.ts";
import { FetchBatch, type SecretSource } from "../secrets/source.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import { buildDeliveries, knownGroupFingerprints } from "./files.ts";
import { selectContainer, type Selection } from "./selection.ts";

export const MANAGED_LABEL = "dso.managed";
const SERVICE_LABEL = "dso.service";
const TARGET_LABEL = "dso.target";

export interface SwarmDeps {
  docker: Dockerode;
  /** Secrets a service names only in its labels are tracked (and so polled) like a container's. */
  store: Pick<SecretStore, "ensure" | "get">;
  config: () => DsoConfig;
  /** Values come through one fetch window per pass (FetchBatch), wiped when the pass ends. */
  source: SecretSource;
  /** Keys the version part of secret names (the host key). */
  markers: VersionMarkers;
  log: Pick<FieldLogger, "info" | "warn" | "error">;
}

export interface ServiceReport {
  service: string;
  action: "updated" | "unchanged" | "failed";
  secrets: string[];
  error?: string;
}

type ServiceInfo = Dockerode.Service & {
  ID: string;
  Version: { Index: number };
  Spec: Dockerode.ServiceSpec & { Name: string; Labels?: Record<string, string> };
  PreviousSpec?: Dockerode.ServiceSpec;
  UpdateStatus?: { State?: string };
};

interface TaskInfo {
  DesiredState?: string;
  Status?: { State?: string };
  Spec?: { ContainerSpec?: { Secrets?: Dockerode.SecretReference[] } };
}

/** Task states in which the task's container exists on its node (and has its secret files). */
const ON_NODE_TASK_STATES = new Set(["assigned", "accepted", "preparing", "ready", "starting", "running"]);
/** Task states after which a task holds nothing any more. */
const ENDED_TASK_STATES = new Set(["complete", "shutdown", "failed", "rejected", "orphaned", "remove"]);
/** Update states in which Swarm may still roll back to PreviousSpec (and so needs its secrets). */
const ROLLBACK_POSSIBLE_STATES = new Set(["updating", "paused", "rollback_started", "rollback_paused"]);
/** After an update, unused versions are swept this often until the old tasks are gone... */
const SWEEP_INTERVAL_MS = 2_000;
/** ...for at most this many sweeps (then the agent's periodic reconcile takes over). */
const SWEEP_LIMIT = 150;

export async function isSwarmManager(docker: Dockerode): Promise<boolean> {
  const info = (await docker.info()) as { Swarm?: { ControlAvailable?: boolean; LocalNodeState?: string } };
  return info.Swarm?.LocalNodeState === "active" && info.Swarm.ControlAvailable === true;
}

/** Container labels of a service's tasks and the service's own labels both count. */
function specSecretIds(spec: Dockerode.ServiceSpec | undefined): string[] {
  const refs = (spec?.TaskTemplate as { ContainerSpec?: { Secrets?: Dockerode.SecretReference[] } } | undefined)?.ContainerSpec?.Secrets ?? [];
  return refs.map((r) => r.SecretID ?? "");
}

/** A task still needs its secrets while its container exists or while it is meant to start. */
function taskHoldsSecrets(task: TaskInfo): boolean {
  const state = task.Status?.State ?? "";
  if (ON_NODE_TASK_STATES.has(state)) return true;
  return !ENDED_TASK_STATES.has(state) && task.DesiredState === "running";
}

function serviceLabels(service: ServiceInfo): Record<string, string> {
  const container = (service.Spec.TaskTemplate as { ContainerSpec?: { Labels?: Record<string, string> } })?.ContainerSpec?.Labels;
  return { ...(container ?? {}), ...(service.Spec.Labels ?? {}) };
}

/** What every version of the Swarm secret for this file's name starts with (before the version token). */
function swarmSecretBase(service: string, target: string): string {
  return `dso_${service}_${posix.basename(target)}`.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 50);
}

export function swarmSecretName(markers: VersionMarkers, service: string, target: string, fingerprints: Readonly<Record<string, string>>): string {
  return `${swarmSecretBase(service, target)}_${markers.swarmToken(service, target, fingerprints)}`;
}

interface WantedSecret {
  name: string;
  target: string;
  data: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
}

export class SwarmRotator {
  private sweepTimer?: ReturnType<typeof setTimeout>;
  private sweepsLeft = 0;
  private stopped = false;
  private named = new Set<string>();
  /** Refusals logged at the last look: each is logged when it first appears, not every pass. */
  private refusalsLogged = new Set<string>();
  private passes: Promise<void> = Promise.resolve();

  constructor(private readonly deps: SwarmDeps) {}

  /** Secrets the selected services named at the last look (a full container pass keeps them). */
  secretNames(): ReadonlySet<string> {
    return this.named;
  }

  /** Agent shutdown: no more sweeps. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.sweepTimer);
  }

  async services(): Promise<Array<{ service: ServiceInfo; selection: Selection }>> {
    const services = (await this.deps.docker.listServices()) as unknown as ServiceInfo[];
    const selected: Array<{ service: ServiceInfo; selection: Selection }> = [];
    const refusals = new Set<string>();
    for (const service of services) {
      const outcome = selectContainer({ id: service.ID, name: service.Spec.Name, labels: serviceLabels(service), kind: "service" }, this.deps.config());
      for (const w of outcome.warnings) this.deps.log.warn(w);
      // A service asking for what it may not have (undeclared, outside the targets) gets the rest.
      for (const r of outcome.refused) {
        if (!this.refusalsLogged.has(r.message)) this.deps.log.error(r.message);
        refusals.add(r.message);
      }
      if (outcome.selected) selected.push({ service, selection: outcome.selection });
    }
    this.refusalsLogged = refusals;
    this.named = new Set(selected.flatMap((s) => s.selection.secrets.map((spec) => spec.name)));
    return selected;
  }

  /**
   * Make every DSO service use Swarm secrets holding the current values (only names filter).
   * One pass at a time: the agent's connect pass and its first poll overlap, and two passes
   * would both create the same secret version (Swarm: AlreadyExists) and update the service twice.
   */
  reconcile(only?: Set<string>, opts: { refresh?: boolean } = {}): Promise<ServiceReport[]> {
    const pass = this.passes.then(() => this.reconcileNow(only, opts.refresh === true));
    this.passes = pass.then(
      () => undefined,
      () => undefined,
    );
    return pass;
  }

  /** `refresh` (`dso rotate`): read the values whatever the known fingerprints say, so a change shows up now. */
  private async reconcileNow(only: Set<string> | undefined, refresh: boolean): Promise<ServiceReport[]> {
    const reports: ServiceReport[] = [];
    const concerned = (await this.services()).filter(({ selection }) => !only || selection.secrets.some((s) => only.has(s.name)));
    // Tracked (and so known to the fetch) before the window opens: it fetches every name of the pass at once.
    for (const { selection } of concerned) for (const spec of selection.secrets) this.deps.store.ensure(spec);
    // A service already on the versions the known fingerprints name needs no value read.
    const selected = concerned.filter(({ service, selection }) => {
      if (refresh || !this.upToDate(service, selection)) return true;
      reports.push({ service: service.Spec.Name, action: "unchanged", secrets: selection.secrets.map((s) => s.name) });
      return false;
    });
    // One window for the pass: each secret is fetched once whatever the number of services using it.
    const batch = new FetchBatch(this.deps.source, new Set(selected.flatMap(({ selection }) => selection.secrets.map((s) => s.name))));
    try {
      for (const { service, selection } of selected) reports.push(await this.reconcileService(service, selection, batch));
    } finally {
      // Swarm takes a secret's data base64 in a JSON body (a copy by nature); ours is wiped.
      batch.release();
    }
    if (reports.some((r) => r.action === "updated")) this.sweepsLeft = SWEEP_LIMIT;
    await this.sweep();
    return reports;
  }

  /** Remove what is unused now; while old versions are still held by tasks, look again soon. */
  private async sweep(): Promise<void> {
    clearTimeout(this.sweepTimer);
    const held = await this.removeUnusedCounting()
      .then((r) => r.held)
      .catch((error) => {
        this.deps.log.warn("could not remove unused swarm secret versions", { error: describeError(error) });
        return 1;
      });
    if (held === 0 || this.sweepsLeft <= 0 || this.stopped) return;
    this.sweepsLeft--;
    this.sweepTimer = setTimeout(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref?.();
  }

  /**
   * Whether every DSO file of the service already names the version the known fingerprints give
   * (no fetch): each directory it delivers to has its files, and each file of ours there carries
   * the current version token. Secrets of the user's own in the same directory are not ours.
   */
  private upToDate(service: ServiceInfo, selection: Selection): boolean {
    const known = knownGroupFingerprints(selection, (name) => this.deps.store.get(name)?.fingerprint);
    if (!known || known.size === 0) return false;
    // Keyed as a target's directory reads (posix.dirname of the joined path).
    const groups = new Map([...known].map(([path, fingerprints]) => [posix.dirname(posix.join(path, "x")), fingerprints]));
    const refs = (service.Spec.TaskTemplate as { ContainerSpec?: { Secrets?: Dockerode.SecretReference[] } } | undefined)?.ContainerSpec?.Secrets ?? [];
    const served = new Set<string>();
    for (const ref of refs) {
      const target = ref.File?.Name ?? "";
      const fingerprints = groups.get(posix.dirname(target));
      if (!fingerprints || !ref.SecretName?.startsWith(`${swarmSecretBase(service.Spec.Name, target)}_`)) continue;
      if (ref.SecretName !== swarmSecretName(this.deps.markers, service.Spec.Name, target, fingerprints)) return false;
      served.add(posix.dirname(target));
    }
    return [...groups.keys()].every((path) => served.has(path));
  }

  private async reconcileService(service: ServiceInfo, selection: Selection, batch: FetchBatch): Promise<ServiceReport> {
    const names = selection.secrets.map((s) => s.name);
    const report: ServiceReport = { service: service.Spec.Name, action: "unchanged", secrets: names };
    try {
      const { values, errors } = await batch.values(names);
      const built = buildDeliveries(selection, values);
      const problems = [...errors, ...built.errors];
      if (problems.length) throw new Error(problems.join("; "));
      const wanted: WantedSecret[] = built.groups.flatMap((group) =>
        group.files.map((file) => {
          const target = posix.join(group.path, file.name);
          // Any change of a secret in this directory gives its files new Swarm secret versions.
          return { name: swarmSecretName(this.deps.markers, service.Spec.Name, target, group.fingerprints), target, data: file.content, mode: file.mode, uid: file.uid, gid: file.gid };
        }),
      );
      const refs = await this.ensureSecrets(service.Spec.Name, wanted);
      const spec = structuredClone(service.Spec) as Dockerode.ServiceSpec & { TaskTemplate: { ContainerSpec: { Secrets?: Dockerode.SecretReference[] } } };
      const current = spec.TaskTemplate.ContainerSpec.Secrets ?? [];
      const targets = new Set(wanted.map((w) => w.target));
      const kept = current.filter((ref) => !targets.has(ref.File?.Name ?? ""));
      const next = [...kept, ...refs];
      const same =
        current.length === next.length &&
        next.every((ref) => current.some((c) => c.SecretName === ref.SecretName && c.File?.Name === ref.File?.Name));
      if (same) return report;
      spec.TaskTemplate.ContainerSpec.Secrets = next;
      await this.deps.docker.getService(service.ID).update({ ...spec, version: service.Version.Index } as never);
      this.deps.log.info("updated swarm service to new secret versions", { service: service.Spec.Name, files: wanted.length });
      return { ...report, action: "updated" };
    } catch (error) {
      this.deps.log.warn("swarm service rotation failed", { service: service.Spec.Name, error: describeError(error) });
      return { ...report, action: "failed", error: describeError(error) };
    }
  }

  private async ensureSecrets(service: string, wanted: WantedSecret[]): Promise<Dockerode.SecretReference[]> {
    const existing = (await this.deps.docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } })) as Array<{
      ID: string;
      Spec?: { Name?: string };
    }>;
    const byName = new Map(existing.map((s) => [s.Spec?.Name ?? "", s.ID]));
    const refs: Dockerode.SecretReference[] = [];
    for (const w of wanted) {
      let id = byName.get(w.name);
      if (!id) {
        // Body only: docker-modem would otherwise copy the spec, Data (the value) included,
        // into the URL's query string, which dockerd's debug log prints.
        const body = {
          Name: w.name,
          Labels: { [MANAGED_LABEL]: "true", [SERVICE_LABEL]: service, [TARGET_LABEL]: w.target },
          Data: Buffer.from(w.data).toString("base64"),
        };
        const created = (await this.deps.docker.createSecret({ _query: {}, _body: body } as never)) as { id?: string; ID?: string };
        id = created.id ?? created.ID ?? "";
      }
      refs.push({ SecretID: id, SecretName: w.name, File: { Name: w.target, UID: String(w.uid), GID: String(w.gid), Mode: w.mode } });
    }
    return refs;
  }

  /**
   * Remove DSO-made secrets nothing uses any more. Swarm would delete a secret that only running
   * tasks still use (it checks service specs only), so DSO also counts every task on every node
   * that still has or is about to start a container, and the previous spec while an update can
   * still roll back to it.
   */
  async removeUnused(): Promise<number> {
    return (await this.removeUnusedCounting()).removed;
  }

  private async removeUnusedCounting(): Promise<{ removed: number; held: number }> {
    const [services, tasks, managed] = await Promise.all([
      this.deps.docker.listServices() as unknown as Promise<ServiceInfo[]>,
      this.deps.docker.listTasks() as unknown as Promise<TaskInfo[]>,
      this.deps.docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } }) as Promise<Array<{ ID: string }>>,
    ]);
    const inSpec = new Set(services.flatMap((s) => specSecretIds(s.Spec)));
    const held = new Set([
      ...services.filter((s) => ROLLBACK_POSSIBLE_STATES.has(s.UpdateStatus?.State ?? "")).flatMap((s) => specSecretIds(s.PreviousSpec)),
      ...tasks.filter(taskHoldsSecrets).flatMap((t) => (t.Spec?.ContainerSpec?.Secrets ?? []).map((r) => r.SecretID ?? "")),
    ]);
    let removed = 0;
    let waiting = 0;
    for (const secret of managed) {
      if (inSpec.has(secret.ID)) continue;
      if (held.has(secret.ID)) {
        waiting++;
        continue;
      }
      try {
        await this.deps.docker.getSecret(secret.ID).remove();
        removed++;
      } catch {
        // e.g. a service created meanwhile uses it: looked at again at the next sweep
        waiting++;
      }
    }
    return { removed, held: waiting };
  }
}
