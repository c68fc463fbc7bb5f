/**
 * `dso agent`: the lifecycle. It takes the socket's lock, opens the socket at once (the volume
 * driver answers dockerd before Docker itself answers: dockerd starts plugins before it restores
 * containers), starts the provider processes and their polls, and when dockerd answers — retrying
 * without limit — the Docker side: reconciler, events, timer. Nothing is kept on disk; records
 * needed across restarts (DSO volumes, the marker key) are on tmpfs, and everything else is read
 * back from Docker and the containers.
 */
import type Dockerode from "dockerode";
import type { Server } from "bun";
import { loadConfig } from "../config/index.ts";
import type { DsoConfig, ProviderConfig } from "../config/types.ts";
import { secretNamesOf } from "../delivery/plugin/driver-options.ts";
import { pluginDriverName, type DeliveryPlanner } from "../delivery/planner.ts";
import { connectDocker, type DockerConnection } from "../docker/client.ts";
import { describeError, DsoError } from "../errors.ts";
import { log as rootLog } from "../log/logger.ts";
import type { ActionReport, Reconciler } from "../reloader/reconciler.ts";
import { recoverInterruptedReplacements } from "../reloader/strategies/recovery.ts";
import { isSwarmManager, SwarmRotator } from "../reloader/swarm.ts";
import { DsoVolumes } from "../reloader/volumes.ts";
import type { ProviderProcess, ProviderStatus } from "../rpc/supervisor.ts";
import { DockerEventWatcher, type DockerEvent } from "../watcher/docker-events.ts";
import { jittered, nextPollDelay, pollProvider } from "../watcher/provider-poller.ts";
import { startWebhook, type Notification } from "../watcher/webhook.ts";
import { LeakSentinel } from "../watcher/leak-sentinel.ts";
import { versionInfo } from "../version.ts";
import { apiRoutes, type ControlApi } from "./api-routes.ts";
import { startControlServer } from "./control-server.ts";
import { Observer } from "../observe/observer.ts";
import { loadHostKey } from "./host-key.ts";
import { buildReconciler, buildSecretsRuntime, providerProcess, type SecretsRuntime } from "./runtime.ts";
import { acquireSocketLock, type SocketLock } from "./socket-lock.ts";
import { reviveStrandedContainers } from "./revive.ts";
import { ensureTmpfsRoot } from "./volumes-root.ts";
import { hardenProcess, type ProcessHardening } from "../os/libc.ts";

/** Events can be dropped (the daemon keeps 256); reconcile all containers this often anyway. */
export const RECONCILE_INTERVAL_MS = 60_000;
/** How often the leak sentinel picks up containers DSO started serving (and drops gone ones). */
const LEAK_SENTINEL_SYNC_MS = 2_000;
export const DOCKER_RETRY_MS = 2_000;
/** How long an API call that needs Docker waits for the agent's first connection to it. */
export const DOCKER_READY_WAIT_MS = 15_000;

export interface AgentOptions {
  configPath: string | null;
  socketPath?: string;
  env: Record<string, string | undefined>;
}

export interface ProviderRuntime {
  spec: ProviderConfig;
  process: ProviderProcess;
  lastPoll?: { at: string; changed: number; errors: number };
  nextPollAt?: number;
  /** Failed polls in a row; the next one comes after `retry.backoff` (doubling) up to `retry.attempts`. */
  failedPolls: number;
  /** The next poll was asked for by a webhook notification (for the audit trail). */
  webhookPending?: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

function sameProvider(a: ProviderConfig, b: ProviderConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The Docker side, once dockerd answered. */
interface DockerSide {
  connection: DockerConnection;
  docker: Dockerode;
  planner: DeliveryPlanner;
  reconciler: Reconciler;
  swarm?: SwarmRotator;
  events: DockerEventWatcher;
  sentinel: { sentinel: LeakSentinel; timer: ReturnType<typeof setInterval> };
}

export class Agent implements ControlApi {
  readonly log = rootLog.withTag("agent");
  readonly providers = new Map<string, ProviderRuntime>();
  readonly socketPath: string;
  secrets!: SecretsRuntime;
  volumes!: DsoVolumes;
  /** Metrics, the audit trail and notifications: told what happened, never a value. */
  observer!: Observer;
  private config: DsoConfig;
  private lock?: SocketLock;
  private server?: Server<undefined>;
  private webhook?: Server<undefined>;
  private side?: DockerSide;
  private sideReady: Promise<DockerSide>;
  private resolveSide!: (side: DockerSide) => void;
  private reconcileTimer?: ReturnType<typeof setInterval>;
  private readonly startedAt = new Date();
  private hardening: ProcessHardening = { dumpable: true, coreDumps: true };
  /** Keys the version markers, Swarm secret names and each provider's fingerprints (host-key.ts). */
  private hostKey!: Uint8Array;
  private stopping = false;

  constructor(
    config: DsoConfig,
    private readonly options: AgentOptions,
  ) {
    this.config = config;
    this.socketPath = options.socketPath ?? config.agent.socket;
    this.sideReady = new Promise((resolve) => {
      this.resolveSide = resolve;
    });
  }

  currentConfig(): DsoConfig {
    return this.config;
  }

  async start(): Promise<void> {
    this.hardening = hardenProcess();
    if (this.hardening.dumpable || this.hardening.coreDumps) this.log.warn("could not turn core dumps off for the agent (bun:ffi to libc failed)");
    this.lock = acquireSocketLock(this.socketPath);
    this.observer = new Observer(this.config, { log: rootLog.withTag("observe"), version: versionInfo().version });
    this.observer.start();
    const root = this.config.agent.volumesRoot;
    // The marker key lives on the volume root's tmpfs; as root we can make it one right away.
    if (process.getuid?.() === 0) await ensureTmpfsRoot(root).catch((error) => this.log.warn("volume root not ready", { error: describeError(error) }));
    const hostKey = await loadHostKey(root);
    this.hostKey = hostKey.key;
    if (!hostKey.path) {
      this.log.warn(
        "no tmpfs for the host key (version markers, fingerprints, Swarm secret names): it lives in memory only, so an agent restart delivers every file set once more (no strategy runs) and updates every DSO Swarm service once",
        { root },
      );
    }
    this.secrets = buildSecretsRuntime({
      config: this.config,
      key: hostKey.key,
      provider: (name) => this.providers.get(name)?.process,
      log: rootLog.withTag("secrets"),
      onChanged: (names) => this.side?.reconciler.secretsChanged(names, "mount"),
    });
    this.volumes = new DsoVolumes({
      config: () => this.config,
      store: this.secrets.store,
      source: this.secrets.source,
      markers: this.secrets.markers,
      queue: this.secrets.queue,
      log: rootLog.withTag("volumes"),
      ...(this.options.env.DSO_VOLUME_RECORDS ? { recordsDir: this.options.env.DSO_VOLUME_RECORDS } : {}),
      prepareRoot: async (dir) => {
        if ((await ensureTmpfsRoot(dir)) === "mounted") this.log.info("mounted a tmpfs for DSO volumes", { root: dir });
      },
      onMountCall: (call) => {
        const error = call.error ? new DsoError("DELIVERY_FAILED", call.error) : undefined;
        const secrets = call.secrets.map((name) => ({ name }));
        if (call.route === "Mount") this.observer.volumeMounted({ volume: call.volume, mountId: call.mountId, secrets, ...(error ? { error } : {}) });
        else this.observer.volumeUnmounted({ volume: call.volume, mountId: call.mountId, ...(error ? { error } : {}) });
      },
      onFilesChanged: (volume) => {
        const opts = this.volumes.optionsOf(volume);
        this.side?.reconciler.secretsChanged(opts ? secretNamesOf(opts) : [], "mount");
      },
    });
    await this.volumes.start();
    this.syncProviders();
    this.server = startControlServer({
      socketPath: this.socketPath,
      group: this.config.agent.socketGroup,
      routes: apiRoutes(this),
      plugin: this.volumes.handler(),
      rawRoutes: this.observer.rawRoutes(),
      onRequest: (info) => this.observer.apiRequest(info),
      log: this.log,
    });
    this.log.info("agent listening", { socket: this.socketPath });
    const hook = this.config.agent.watch.webhook;
    if (hook.enabled && hook.authToken) {
      this.webhook = startWebhook({ listen: hook.listen, token: hook.authToken, onNotify: (n) => this.notify(n) });
      this.log.info("webhook listening", { listen: hook.listen });
    }
    void this.startDockerSide().catch((error) => this.log.error("the Docker side did not start", { error: describeError(error) }));
  }

  /** Connects to dockerd (retrying forever), then starts everything that needs it. */
  private async startDockerSide(): Promise<void> {
    const connection = await this.connectDockerWithRetry();
    if (!connection) return;
    const docker = connection.docker;
    const { planner, reconciler } = await buildReconciler({
      docker,
      secrets: this.secrets,
      config: () => this.config,
      socketPath: this.socketPath,
      volumes: this.volumes,
      log: rootLog.withTag("reconciler"),
      pendingReason: (secret) => this.pendingReason(secret),
      observer: this.observer,
      usedElsewhere: () => this.side?.swarm?.secretNames() ?? [],
    });
    const swarm = (await isSwarmManager(docker).catch(() => false))
      ? new SwarmRotator({
          docker,
          store: this.secrets.store,
          config: () => this.config,
          fetchValues: (names) => this.secrets.source.fetch(names),
          markers: this.secrets.markers,
          log: rootLog.withTag("swarm"),
        })
      : undefined;
    if (swarm) this.log.info("this daemon is a swarm manager: services are rotated by service updates");
    await this.adoptKnownVolumes(docker);
    let connectedOnce = false;
    await recoverInterruptedReplacements(docker, this.log).catch((error) => this.log.warn("could not check for interrupted rotations", { error: describeError(error) }));
    const events = new DockerEventWatcher({
      docker,
      onEvent: (event) => this.onDockerEvent(event),
      onConnected: async () => {
        if (connectedOnce) this.observer.dockerEventsReconnected();
        connectedOnce = true;
        await reviveStrandedContainers({ docker, drivers: [pluginDriverName(this.socketPath)], log: this.log });
        // Start and die events may have been missed: every plan is suspect, every container is looked at.
        planner.invalidateAll();
        await this.reconcileAll();
      },
      log: rootLog.withTag("events"),
    });
    const sentinel = this.startLeakSentinel(docker, reconciler);
    this.side = { connection, docker, planner, reconciler, swarm, events, sentinel };
    if (this.stopping) return;
    this.log.info("connected to Docker", { docker: connection.host, api: connection.negotiatedApiVersion });
    this.resolveSide(this.side);
    events.start();
    this.reconcileTimer = setInterval(() => void this.reconcileAll(), RECONCILE_INTERVAL_MS);
    this.reconcileTimer.unref?.();
  }

  /**
   * The leak sentinel follows the containers DSO serves while `agent.leak_sentinel.enabled` is on
   * (read at every tick, so a config reload turns it on or off).
   */
  private startLeakSentinel(docker: Dockerode, reconciler: Reconciler): { sentinel: LeakSentinel; timer: ReturnType<typeof setInterval> } {
    const log = rootLog.withTag("leak-sentinel");
    const sentinel = new LeakSentinel({
      docker,
      log,
      onSighting: (s) => {
        if (s.reported) log.warn("a value DSO delivered appeared in a container's output", { container: s.container.name, secret: s.secret ?? "(a provider credential)" });
        this.observer.leakDetected({ container: s.container, ...(s.secret ? { secret: s.secret } : {}), reported: s.reported });
      },
    });
    const tick = () => sentinel.sync(this.config.agent.leakSentinel.enabled && !this.stopping ? reconciler.list().map((c) => ({ id: c.id, name: c.name })) : []);
    const timer = setInterval(tick, LEAK_SENTINEL_SYNC_MS);
    timer.unref?.();
    tick();
    return { sentinel, timer };
  }

  private async connectDockerWithRetry(): Promise<DockerConnection | undefined> {
    for (let attempt = 1; !this.stopping; attempt++) {
      try {
        return await connectDocker({ env: this.options.env });
      } catch (error) {
        if (attempt === 1) this.log.warn("Docker is not reachable yet; retrying", { error: describeError(error) });
        await Bun.sleep(DOCKER_RETRY_MS);
      }
    }
    return undefined;
  }

  /** DSO volumes dockerd knows but this driver has no record of (records lost): take them back. */
  private async adoptKnownVolumes(docker: Dockerode): Promise<void> {
    try {
      const names = [pluginDriverName(this.socketPath)];
      const { Volumes } = (await docker.listVolumes({ filters: { driver: names } })) as { Volumes?: Array<{ Name: string; Options?: Record<string, string> | null }> | null };
      const adopted = await this.volumes.adopt((Volumes ?? []).map((vol) => ({ name: vol.Name, opts: vol.Options ?? {} })));
      if (adopted.length) this.log.info("took back DSO volumes dockerd knows", { volumes: adopted.join(",") });
    } catch (error) {
      this.log.warn("could not list DSO volumes from dockerd", { error: describeError(error) });
    }
  }

  /** The Docker side, waiting a while for the first connection (API calls right after start). */
  async docker(): Promise<DockerSide> {
    if (this.side) return this.side;
    const timeout = Bun.sleep(DOCKER_READY_WAIT_MS).then(() => undefined);
    const side = await Promise.race([this.sideReady, timeout]);
    if (!side) throw new DsoError("DOCKER_UNREACHABLE", "the agent is not connected to Docker yet", { hint: "see the agent's log" });
    return side;
  }

  /** Start, keep or replace provider processes to match the config. */
  private syncProviders(): void {
    for (const [name, runtime] of this.providers) {
      const spec = this.config.providers[name];
      if (spec && sameProvider(spec, runtime.spec)) continue;
      clearTimeout(runtime.timer);
      void runtime.process.stop();
      this.providers.delete(name);
    }
    for (const [name, spec] of Object.entries(this.config.providers)) {
      if (this.providers.has(name)) continue;
      const runtime: ProviderRuntime = { spec, process: providerProcess(name, spec, this.options.env, this.hostKey, this.observer.forProvider(name)), failedPolls: 0 };
      this.providers.set(name, runtime);
      this.schedulePoll(runtime, 0);
    }
  }

  private schedulePoll(runtime: ProviderRuntime, delayMs: number): void {
    clearTimeout(runtime.timer);
    runtime.nextPollAt = Date.now() + delayMs;
    runtime.timer = setTimeout(() => void this.pollOnce(runtime), delayMs);
  }

  private async pollOnce(runtime: ProviderRuntime): Promise<void> {
    if (this.stopping || this.providers.get(runtime.spec.name) !== runtime) return;
    let failed = false;
    try {
      const outcome = await pollProvider(runtime.spec.name, runtime.process, this.secrets.store);
      failed = outcome.failed;
      const answered = this.secrets.store.forProvider(runtime.spec.name).map((s) => s.spec.name).filter((n) => !outcome.errors.some((e) => e.secret === n));
      this.observer.pollFinished({ provider: runtime.spec.name, secrets: answered, ...(outcome.failed ? { error: new DsoError("PROVIDER_UNAVAILABLE", outcome.errors[0]?.message ?? "poll failed") } : {}) });
      runtime.lastPoll = { at: new Date().toISOString(), changed: outcome.changed.length, errors: outcome.errors.length };
      if (outcome.errors.length) {
        this.log.warn("poll found stale secrets", { provider: runtime.spec.name, stale: outcome.errors.map((e) => e.secret).join(",") });
      }
      if (outcome.changed.length) this.log.info("secrets changed at the provider", { provider: runtime.spec.name, secrets: outcome.changed.join(",") });
      // Seeded too: containers may hold another version than the one seen first (changed while we were down).
      // Recovered too: a fetch that failed (provider crashed, timed out) left containers behind.
      const touched = [...outcome.changed, ...outcome.seeded, ...outcome.recovered];
      const trigger = runtime.webhookPending ? "webhook" : "poll";
      runtime.webhookPending = false;
      if (touched.length) {
        this.side?.reconciler.secretsChanged(touched, trigger);
        if (this.side?.swarm) void this.side.swarm.reconcile(new Set(touched));
      }
    } catch (error) {
      failed = true;
      this.observer.pollFinished({ provider: runtime.spec.name, error });
      this.log.error("poll failed", { provider: runtime.spec.name, error: describeError(error) });
    } finally {
      if (!this.stopping) this.schedulePoll(runtime, this.nextPollDelay(runtime, failed));
    }
  }

  private nextPollDelay(runtime: ProviderRuntime, failed: boolean): number {
    runtime.failedPolls = failed ? runtime.failedPolls + 1 : 0;
    const next = nextPollDelay(runtime.failedPolls, runtime.spec.retry, jittered(this.config.agent.watch.pollingIntervalMs));
    if (runtime.failedPolls >= runtime.spec.retry.attempts) runtime.failedPolls = 0;
    return next;
  }

  private pendingReason(secret: string): string {
    const provider = this.secrets.store.get(secret)?.spec.provider;
    const next = provider ? this.providers.get(provider)?.nextPollAt : undefined;
    if (next === undefined) return "first poll";
    const seconds = Math.max(0, Math.round((next - Date.now()) / 1000));
    return `first poll in ${seconds >= 120 ? `${Math.round(seconds / 60)}m` : `${seconds}s`}`;
  }

  /** A webhook notification: poll the named secret's provider (or the named one, or all) now. */
  private notify(notification: Notification): boolean {
    const providerName = notification.secret_name ? this.secrets.store.get(notification.secret_name)?.spec.provider : notification.provider;
    const named = notification.secret_name !== undefined || notification.provider !== undefined;
    const targets = named ? [this.providers.get(providerName ?? "")].filter((r) => r !== undefined) : [...this.providers.values()];
    for (const runtime of targets) {
      runtime.webhookPending = true;
      this.schedulePoll(runtime, 0);
    }
    this.log.info("webhook notification: polling now", { providers: targets.map((r) => r.spec.name).join(",") || "none" });
    return targets.length > 0;
  }

  private onDockerEvent(event: DockerEvent): void {
    const side = this.side;
    if (!side) return;
    if (event.Type === "service") {
      if (event.Action === "create" && side.swarm) void side.swarm.reconcile();
      return;
    }
    if (event.Type !== "container") return;
    const id = event.Actor.ID;
    if (event.Action === "start" || event.Action === "die") side.planner.invalidate(id);
    if (event.Action === "start") side.reconciler.containersChanged([id]);
    else if (event.Action === "destroy") side.reconciler.forget(id);
  }

  private async reconcileAll(): Promise<void> {
    const side = this.side;
    if (!side || this.stopping) return;
    try {
      await side.reconciler.reconcileAll({ full: true });
      if (side.swarm) await side.swarm.reconcile();
    } catch (error) {
      this.log.warn("reconcile failed", { error: describeError(error) });
    }
  }

  async sync(container?: string): Promise<ActionReport[]> {
    const { docker, reconciler } = await this.docker();
    if (!container) return reconciler.reconcileAll({ full: true, trigger: "sync" });
    const inspect = await docker
      .getContainer(container)
      .inspect()
      .catch(() => {
        throw new DsoError("BAD_REQUEST", `no such container: ${container}`);
      });
    const [report] = await reconciler.reconcileIds([inspect.Id]);
    if (!report) throw new DsoError("BAD_REQUEST", `container ${container} is not running or has no DSO secrets`);
    return [report];
  }

  async rotate(secret: string): Promise<ActionReport[]> {
    if (!this.secrets.store.get(secret)) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
    const { reconciler } = await this.docker();
    return reconciler.reconcileAll({ only: new Set([secret]), refresh: true, trigger: "rotate" });
  }

  async plan(secret: string) {
    const state = this.secrets.store.get(secret);
    if (!state) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
    const { reconciler } = await this.docker();
    return {
      secret,
      provider: state.spec.provider,
      containers: reconciler.affectedBy([secret]).map((c) => ({
        id: c.id,
        name: c.name,
        strategy: c.strategy,
        paths: [...new Map(c.status.filter((s) => s.name === secret).map((s) => [s.path, { path: s.path, mode: s.mode ?? "?" }])).values()],
        action: c.strategy === "none" ? "update files" : `update files, then ${c.strategy}`,
      })),
    };
  }

  async inject(container: string, secrets: string[]) {
    const { reconciler } = await this.docker();
    return reconciler.inject(container, secrets);
  }

  async containers() {
    const { reconciler } = await this.docker();
    return reconciler.list();
  }

  status() {
    const providers: Array<ProviderStatus & { lastPoll?: ProviderRuntime["lastPoll"] }> = [...this.providers.values()].map((rt) => ({
      ...rt.process.getStatus(),
      lastPoll: rt.lastPoll,
    }));
    const connection = this.side?.connection;
    const { store, markers } = this.secrets;
    return {
      agent: {
        version: versionInfo().version,
        pid: process.pid,
        startedAt: this.startedAt.toISOString(),
        socket: this.socketPath,
        docker: connection ? { host: connection.host, api: connection.negotiatedApiVersion, connected: this.side?.events.connected ?? false } : undefined,
        cache: this.config.agent.cache,
        pollingIntervalMs: this.config.agent.watch.pollingIntervalMs,
        hardening: this.hardening,
      },
      providers,
      secrets: store.all().map((s) => ({
        name: s.spec.name,
        provider: s.spec.provider,
        version: s.version,
        // A keyed token, never the provider's fingerprint itself (which may be a hash of the value).
        fingerprint: s.fingerprint ? markers.token(s.spec.name, s.fingerprint) : undefined,
        lastPollAt: s.lastPollAt,
        lastChangeAt: s.lastChangeAt,
        stale: s.stale,
        state: s.stale
          ? `stale: provider ${s.spec.provider} unavailable since ${s.staleSince?.slice(11, 16) ?? "?"}`
          : s.fingerprint
            ? "current"
            : `pending: ${this.pendingReason(s.spec.name)}`,
        error: s.error,
      })),
    };
  }

  /** SIGHUP: load the config again; an invalid one is logged and the old one kept. */
  async reload(): Promise<boolean> {
    try {
      const { config, warnings } = await loadConfig(this.options.configPath, this.options.env);
      for (const w of warnings) this.log.warn(`config: ${w.path}: ${w.message}`);
      this.config = config;
      this.secrets.store.setSpecs(config.secrets);
      this.syncProviders();
      this.log.info("configuration reloaded", { providers: Object.keys(config.providers).length, secrets: config.secrets.length });
      void this.reconcileAll();
      return true;
    } catch (error) {
      this.log.error("configuration reload failed; keeping the running configuration", { error: describeError(error) });
      return false;
    }
  }

  /** SIGTERM: finish in-flight deliveries, stop providers and the socket, leave files in place. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info("agent stopping");
    clearInterval(this.reconcileTimer);
    for (const rt of this.providers.values()) clearTimeout(rt.timer);
    await this.side?.events.stop();
    if (this.side) {
      clearInterval(this.side.sentinel.timer);
      this.side.sentinel.sentinel.stop();
    }
    this.side?.reconciler.stop();
    this.side?.swarm?.stop();
    await this.side?.reconciler.idle();
    await Promise.all([...this.providers.values()].map((rt) => rt.process.stop()));
    await this.webhook?.stop(true);
    await this.server?.stop(true);
    await this.observer?.stop();
    this.lock?.release();
  }
}
