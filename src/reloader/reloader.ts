/**
 * The Reloader: knows which running containers need which secrets, delivers their files, and
 * applies each container's strategy when a secret changes. One action per container at a time
 * (a per-container queue); changes that arrive within the debounce window become one action.
 */
import type Dockerode from "dockerode";
import type { DsoConfig } from "../config/types.ts";
import { refFor, type SecretStore } from "../agent/secret-store.ts";
import type { DeliveryResult, SecretFile } from "../delivery/types.ts";
import { describeError, DsoError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import type { FetchItem, SecretRef } from "../rpc/protocol.ts";
import { buildDeliveries, type FetchedSecret } from "./files.ts";
import { implicitSecretSpec, selectContainer, type ContainerInfo, type Selection } from "./selection.ts";
import { strategyByName, type StrategyResult } from "./strategies/index.ts";

export const DEBOUNCE_MS = 300;
const OUTAGE_CODES = new Set(["PROVIDER_UNAVAILABLE", "PROVIDER_TIMEOUT", "PROVIDER_THROTTLED", "PROVIDER_AUTH", "RPC_PROTOCOL", "INTERNAL"]);

/** True when the selection wants variables the container does not have with those values. */
function envNeedsRecreate(current: string[], wanted: Record<string, string>): boolean {
  const have = new Set(current);
  return Object.entries(wanted).some(([k, val]) => !have.has(`${k}=${val}`));
}
/** Containers rotated at once: enough to overlap Docker round trips, few enough not to thrash 2 cores. */
export const ROTATION_CONCURRENCY = 10;

export interface SecretFetcher {
  fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchItem[]>;
}

export type DeliverFiles = (
  containerId: string,
  targetPath: string,
  files: SecretFile[],
  signal?: AbortSignal,
) => Promise<DeliveryResult>;


export interface ContainerState {
  id: string;
  name: string;
  secrets: string[];
  strategy: string;
  /** Per target directory: how and when files were last delivered. */
  deliveries: Array<{ path: string; mode: string; files: string[]; at: string }>;
  /** secret → fingerprint of the value now in the container. */
  delivered: Record<string, string>;
  versions: Record<string, string>;
  lastAction?: { at: string; strategy: string; action: string; detail?: string };
  error?: string;
}

export interface ReloaderDeps {
  docker: Dockerode;
  store: SecretStore;
  /** The live provider for a name (providers change on config reload). */
  provider(name: string): SecretFetcher | undefined;
  deliver: DeliverFiles;
  log: FieldLogger;
  config: () => DsoConfig;
}

export interface ActionReport {
  container: string;
  name: string;
  delivered: string[];
  action?: StrategyResult["action"];
  error?: string;
}

/**
 * A container's own labels, without the `dso.*` labels its image baked in: an image (which may
 * come from anyone) must not be able to ask for secrets; the person who runs it opts in.
 */
export function ownLabels(container: Record<string, string>, image: Record<string, string>): { labels: Record<string, string>; dropped: string[] } {
  const labels: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [key, value] of Object.entries(container)) {
    if (key.startsWith("dso.") && image[key] === value) dropped.push(key);
    else labels[key] = value;
  }
  return { labels, dropped };
}

export interface InjectReport {
  container: string;
  name: string;
  deliveries: ContainerState["deliveries"];
  secrets: Array<{ name: string; version?: string; delivered: boolean }>;
  error?: string;
}

export class Reloader {
  private readonly containers = new Map<string, ContainerState>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private pendingChanges = new Set<string>();
  private readonly imageLabels = new Map<string, Record<string, string>>();
  private readonly warnedImageLabels = new Set<string>();
  private debounceTimer?: ReturnType<typeof setTimeout>;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly deps: ReloaderDeps) {}

  private async containerInfo(inspect: Dockerode.ContainerInspectInfo): Promise<ContainerInfo> {
    const name = inspect.Name.replace(/^\//, "");
    let image = this.imageLabels.get(inspect.Image);
    if (!image) {
      const info = (await this.deps.docker.getImage(inspect.Image).inspect().catch(() => undefined)) as
        | { Config?: { Labels?: Record<string, string> | null } }
        | undefined;
      image = info?.Config?.Labels ?? {};
      this.imageLabels.set(inspect.Image, image);
    }
    const { labels, dropped } = ownLabels(inspect.Config.Labels ?? {}, image);
    if (dropped.length && !this.warnedImageLabels.has(inspect.Id)) {
      this.warnedImageLabels.add(inspect.Id);
      this.deps.log.warn(`container ${name}: ignoring ${dropped.join(", ")} set by its image; name the container in secrets[].targets of dso.yaml to give it secrets`);
    }
    return { id: inspect.Id, name, labels };
  }

  list(): ContainerState[] {
    return [...this.containers.values()];
  }

  /** Resolves when every queued action has finished (for SIGTERM and tests). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0 || this.debounceTimer) {
      if (this.debounceTimer) await Bun.sleep(DEBOUNCE_MS);
      await Promise.allSettled([...this.inFlight]);
    }
  }

  /** Serialize work per container, and track it so shutdown can wait for it. */
  private enqueue<T>(containerId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(containerId) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(work);
    this.queues.set(containerId, next);
    this.inFlight.add(next);
    void next
      .catch(() => {})
      .finally(() => {
        this.inFlight.delete(next);
        if (this.queues.get(containerId) === next) this.queues.delete(containerId);
      });
    return next;
  }

  /** Fetch values for the named secrets, one call per provider; falls back to the cache. */
  async fetchValues(names: string[], signal?: AbortSignal): Promise<{ values: Map<string, FetchedSecret>; errors: string[] }> {
    const byProvider = new Map<string, string[]>();
    for (const name of new Set(names)) {
      const state = this.deps.store.get(name);
      if (!state) continue;
      byProvider.set(state.spec.provider, [...(byProvider.get(state.spec.provider) ?? []), name]);
    }
    const values = new Map<string, FetchedSecret>();
    const errors: string[] = [];
    await Promise.all(
      [...byProvider].map(async ([provider, list]) => {
        const fetcher = this.deps.provider(provider);
        let items: FetchItem[] = [];
        try {
          if (!fetcher) throw new DsoError("PROVIDER_UNAVAILABLE", `provider ${provider} is not configured`);
          items = await fetcher.fetch(
            list.map((name) => refFor(this.deps.store.get(name)!.spec)),
            signal,
          );
        } catch (error) {
          items = list.map((name) => ({ ref: { name }, error: { code: "PROVIDER_UNAVAILABLE", message: describeError(error) } }));
        }
        list.forEach((name, i) => {
          const item = items[i];
          if (item?.value && item.fingerprint) {
            const fetched = { value: item.value, fingerprint: item.fingerprint, version: item.version };
            this.deps.store.recordFetched(name, fetched);
            values.set(name, fetched);
            return;
          }
          // The cache rides out outages; a secret the provider says is gone is not served from it.
          const outage = !item?.error || OUTAGE_CODES.has(item.error.code);
          const cached = outage ? this.deps.store.cachedValue(name) : undefined;
          const message = item?.error?.message ?? "no value returned";
          this.deps.store.recordError(name, message, new Date());
          if (cached) {
            this.deps.log.warn("provider failed; serving the last known value from the in-memory cache", { secret: name });
            values.set(name, cached);
          } else {
            errors.push(`secret "${name}": ${message}`);
          }
        });
      }),
    );
    return { values, errors };
  }

  /** Inspect and select one container; undefined when it is not ours or not running. */
  private async selectById(
    containerId: string,
  ): Promise<{ selection: Selection; running: boolean; env: string[] } | undefined> {
    let inspect: Dockerode.ContainerInspectInfo;
    try {
      inspect = await this.deps.docker.getContainer(containerId).inspect();
    } catch {
      this.containers.delete(containerId);
      return undefined;
    }
    // Swarm tasks get their secrets through their service (see swarm.ts), not one by one.
    if (inspect.Config.Labels?.["com.docker.swarm.task.id"]) return undefined;
    const outcome = selectContainer(await this.containerInfo(inspect), this.deps.config());
    for (const warning of outcome.warnings) this.deps.log.warn(warning);
    if (!outcome.selected) {
      this.containers.delete(inspect.Id);
      return undefined;
    }
    for (const spec of outcome.selection.secrets) this.deps.store.ensure(spec);
    return { selection: outcome.selection, running: inspect.State.Running, env: inspect.Config.Env ?? [] };
  }

  /**
   * Deliver every file set of the selection and record it; returns the secrets delivered and
   * the environment variables the selection wants (env injection: applied by re-creation).
   */
  private async deliverSelection(
    selection: Selection,
    values: Map<string, FetchedSecret>,
    fetchErrors: string[],
    targetId = selection.containerId,
    signal?: AbortSignal,
  ): Promise<{ delivered: string[]; env: Record<string, string> }> {
    const built = buildDeliveries(selection, values);
    const state = this.stateFor(selection, targetId);
    const errors = [...fetchErrors, ...built.errors];
    const delivered: string[] = [];
    for (const group of built.groups) {
      try {
        const result = await this.deps.deliver(targetId, group.path, group.files, signal);
        state.deliveries = [
          ...state.deliveries.filter((d) => d.path !== group.path),
          { path: group.path, mode: result.mode, files: result.files, at: new Date().toISOString() },
        ];
        for (const [secret, fingerprint] of Object.entries(group.fingerprints)) {
          state.delivered[secret] = fingerprint;
          const version = values.get(secret)?.version;
          if (version) state.versions[secret] = version;
          delivered.push(secret);
        }
      } catch (error) {
        errors.push(`${group.path}: ${describeError(error)}`);
      }
    }
    state.error = errors.length ? errors.join("; ") : undefined;
    if (errors.length) this.deps.log.error("delivery incomplete", { container: selection.containerName, problems: errors.join("; ") });
    return { delivered, env: built.env };
  }

  private stateFor(selection: Selection, id: string): ContainerState {
    const existing = this.containers.get(id);
    const state: ContainerState = existing ?? {
      id,
      name: selection.containerName,
      secrets: [],
      strategy: selection.strategy,
      deliveries: [],
      delivered: {},
      versions: {},
    };
    state.secrets = selection.secrets.map((s) => s.name);
    state.strategy = selection.strategy;
    this.containers.set(id, state);
    return state;
  }

  /** A container started (event or reconcile): deliver its current secrets; no strategy runs. */
  deliverToStarted(containerId: string, signal?: AbortSignal): Promise<ActionReport | undefined> {
    return this.enqueue(containerId, async () => {
      const found = await this.selectById(containerId);
      if (!found?.running) return undefined;
      const { selection } = found;
      const { values, errors } = await this.fetchValues(selection.secrets.map((s) => s.name), signal);
      const { delivered, env } = await this.deliverSelection(selection, values, errors, selection.containerId, signal);
      const state = this.containers.get(selection.containerId);
      this.deps.log.info("delivered secrets to container", { container: selection.containerName, secrets: delivered.join(",") });
      if (envNeedsRecreate(found.env, env)) {
        // Environment variables can only be set by creating the container again.
        this.deps.log.info("re-creating container to set its secret environment variables", { container: selection.containerName });
        return this.applyStrategy(selection, { values, errors }, env, "rolling", signal);
      }
      return { container: containerId, name: selection.containerName, delivered, error: state?.error };
    });
  }

  /**
   * One-off delivery (`dso inject`): the container's labelled secrets plus any named ones, now,
   * without a strategy. Reports names, versions and modes, never values.
   */
  inject(container: string, names: string[] = [], signal?: AbortSignal): Promise<InjectReport> {
    return (async () => {
      const inspect = await this.deps.docker
        .getContainer(container)
        .inspect()
        .catch(() => {
          throw new DsoError("BAD_REQUEST", `no such container: ${container}`);
        });
      if (!inspect.State.Running) throw new DsoError("BAD_REQUEST", `container ${container} is not running`);
      const config = this.deps.config();
      const outcome = selectContainer(await this.containerInfo(inspect), config);
      for (const warning of outcome.warnings) this.deps.log.warn(warning);
      const base: Selection = outcome.selected
        ? outcome.selection
        : {
            containerId: inspect.Id,
            containerName: inspect.Name.replace(/^\//, ""),
            secrets: [],
            strategy: "none",
            signal: config.agent.rotation.signal,
            files: {},
            healthCheckTimeoutMs: config.agent.rotation.healthCheckTimeoutMs,
          };
      const extra = names.map((n) => config.secrets.find((s) => s.name === n) ?? implicitSecretSpec(n, config));
      const unknown = names.filter((_, i) => !extra[i]);
      if (unknown.length) throw new DsoError("SECRET_NOT_FOUND", `unknown secret(s): ${unknown.join(", ")}; list them in secrets[] of dso.yaml`);
      const selection = { ...base, secrets: [...base.secrets.filter((s) => !names.includes(s.name)), ...extra.map((s) => s!)] };
      if (selection.secrets.length === 0) {
        throw new DsoError("BAD_REQUEST", `container ${selection.containerName} has no DSO secrets; name some with --secret`);
      }
      return this.enqueue(inspect.Id, async () => {
        for (const spec of selection.secrets) this.deps.store.ensure(spec);
        const { values, errors } = await this.fetchValues(selection.secrets.map((s) => s.name), signal);
        await this.deliverSelection(selection, values, errors, inspect.Id, signal);
        const state = this.containers.get(inspect.Id);
        return {
          container: inspect.Id,
          name: selection.containerName,
          deliveries: state?.deliveries ?? [],
          secrets: selection.secrets.map((s) => ({ name: s.name, version: values.get(s.name)?.version, delivered: state?.delivered[s.name] !== undefined })),
          error: state?.error,
        };
      });
    })();
  }

  forget(containerId: string): void {
    this.containers.delete(containerId);
  }

  /** Secrets whose fingerprints changed: debounce, then rotate every container that uses them. */
  secretsChanged(names: string[]): void {
    for (const n of names) this.pendingChanges.add(n);
    if (this.debounceTimer) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      const batch = [...this.pendingChanges];
      this.pendingChanges.clear();
      void this.rotate(batch).catch((error) => this.deps.log.error("rotation failed", { error: describeError(error) }));
    }, DEBOUNCE_MS);
  }

  /** Containers (known and running) that use any of the secrets. */
  affectedBy(names: string[]): ContainerState[] {
    const set = new Set(names);
    return this.list().filter((c) => c.secrets.some((s) => set.has(s)));
  }

  /** Fetch, deliver and apply the strategy for each container using any of `names`. */
  async rotate(names: string[], signal?: AbortSignal): Promise<ActionReport[]> {
    const affected = this.affectedBy(names);
    if (affected.length === 0) return [];
    // One fetch per provider for the whole batch, not one per container.
    const prefetched = await this.fetchValues([...new Set(affected.flatMap((c) => c.secrets))], signal);
    const reports: ActionReport[] = [];
    for (let i = 0; i < affected.length; i += ROTATION_CONCURRENCY) {
      const batch = affected.slice(i, i + ROTATION_CONCURRENCY);
      reports.push(...(await Promise.all(batch.map((c) => this.rotateContainer(c.id, signal, prefetched)))));
    }
    return reports;
  }

  private rotateContainer(
    containerId: string,
    signal?: AbortSignal,
    prefetched?: { values: Map<string, FetchedSecret>; errors: string[] },
  ): Promise<ActionReport> {
    return this.enqueue(containerId, async () => {
      const found = await this.selectById(containerId);
      const name = this.containers.get(containerId)?.name ?? containerId.slice(0, 12);
      if (!found?.running) return { container: containerId, name, delivered: [], error: "container is not running" };
      const { selection } = found;
      const covered = prefetched && selection.secrets.every((s) => prefetched.values.has(s.name));
      const { values, errors } = covered ? prefetched : await this.fetchValues(selection.secrets.map((s) => s.name), signal);
      const { delivered, env } = await this.deliverSelection(selection, values, errors, containerId, signal);
      const state = this.containers.get(containerId)!;
      const envChanged = envNeedsRecreate(found.env, env);
      if (delivered.length === 0 && !envChanged) return { container: containerId, name, delivered, error: state.error };
      // New environment values need a new container, whatever the strategy says.
      const strategy = envChanged ? "rolling" : selection.strategy;
      return { ...(await this.applyStrategy(selection, { values, errors }, env, strategy, signal)), delivered };
    });
  }

  /** Run a strategy after the files are in place; records the action on the container's state. */
  private async applyStrategy(
    selection: Selection,
    fetched: { values: Map<string, FetchedSecret>; errors: string[] },
    env: Record<string, string>,
    strategyName: Selection["strategy"],
    signal?: AbortSignal,
  ): Promise<ActionReport> {
    const containerId = selection.containerId;
    const name = selection.containerName;
    const state = this.stateFor(selection, containerId);
    try {
      const result = await strategyByName(strategyName).apply({
        docker: this.deps.docker,
        containerId,
        containerName: name,
        signal: selection.signal,
        healthCheckTimeoutMs: selection.healthCheckTimeoutMs,
        env,
        abort: signal ?? new AbortController().signal,
        log: this.deps.log,
        // The values of this rotation, into the restarted container or its replacement.
        deliver: async (id) => {
          await this.deliverSelection({ ...selection, containerId: id }, fetched.values, fetched.errors, id, signal);
        },
      });
      const record = { at: new Date().toISOString(), strategy: result.strategy, action: result.action, detail: result.detail };
      if (result.containerId !== containerId) {
        const moved = this.containers.get(result.containerId) ?? { ...state, id: result.containerId };
        moved.lastAction = record;
        this.containers.set(result.containerId, moved);
        this.containers.delete(containerId);
      } else {
        state.lastAction = record;
      }
      this.deps.log.info("rotated secrets in container", { container: name, strategy: result.strategy, action: result.action });
      return { container: result.containerId, name, delivered: Object.keys(state.delivered), action: result.action };
    } catch (error) {
      state.error = describeError(error);
      this.deps.log.error("rotation strategy failed", { container: name, strategy: strategyName, error: state.error });
      return { container: containerId, name, delivered: [], error: state.error };
    }
  }

  /**
   * Reconcile: every running container that is ours gets its files if they are missing or older
   * than the known fingerprints. Never runs a strategy: that is only for observed changes.
   */
  async reconcile(filter?: (c: Dockerode.ContainerInfo) => boolean, signal?: AbortSignal): Promise<ActionReport[]> {
    const running = await this.deps.docker.listContainers({ filters: { status: ["running"] } });
    const reports: ActionReport[] = [];
    const seen = new Set(running.map((c) => c.Id));
    for (const id of this.containers.keys()) if (!seen.has(id)) this.containers.delete(id);
    for (const c of running) {
      if (filter && !filter(c)) continue;
      const known = this.containers.get(c.Id);
      const current = known?.secrets.every((s) => {
        const fp = this.deps.store.get(s)?.fingerprint;
        return fp !== undefined && known.delivered[s] === fp;
      });
      if (known && current && !known.error) continue;
      const report = await this.deliverToStarted(c.Id, signal).catch((error) => ({
        container: c.Id,
        name: c.Names[0]?.replace(/^\//, "") ?? c.Id,
        delivered: [],
        error: describeError(error),
      }));
      if (report) reports.push(report);
    }
    return reports;
  }
}
