/**
 * `dso agent`: wires the Watcher (provider polls + Docker events), the Reloader and delivery,
 * and serves the control socket. Stateless on disk: after a restart it rebuilds everything from
 * Docker and the providers, and its first poll only seeds fingerprints (no spurious restarts).
 */
import type Dockerode from "dockerode";
import type { Server } from "bun";
import { loadConfig } from "../config/index.ts";
import type { DsoConfig, ProviderConfig } from "../config/types.ts";
import { connectDocker, type DockerConnection } from "../docker/client.ts";
import { describeError, DsoError } from "../errors.ts";
import { log as rootLog } from "../log/logger.ts";
import { ProviderProcess, type ProviderStatus } from "../rpc/supervisor.ts";
import { Reloader, type ActionReport, type DeliverFiles } from "../reloader/reloader.ts";
import { isSwarmManager, SwarmRotator } from "../reloader/swarm.ts";
import { PlannedDelivery, pluginDriverName, remapsUserNamespaces } from "./planned-delivery.ts";
import { DockerEventWatcher, type DockerEvent } from "../watcher/docker-events.ts";
import { jittered, pollProvider } from "../watcher/provider-poller.ts";
import { startWebhook, type Notification } from "../watcher/webhook.ts";
import { versionInfo } from "../version.ts";
import { apiRoutes } from "./api-routes.ts";
import { startControlServer } from "./control-server.ts";
import { DsoVolumes } from "./dso-volumes.ts";
import { SecretStore } from "./secret-store.ts";

/** Events can be dropped (the daemon keeps 256); reconcile all containers this often anyway. */
export const RECONCILE_INTERVAL_MS = 60_000;
export const DOCKER_RETRY_MS = 2_000;

export interface AgentOptions {
  configPath: string | null;
  socketPath?: string;
  env: Record<string, string | undefined>;
  /** How files reach a container; the delivery engine by default. */
  deliver?: (docker: Dockerode) => DeliverFiles;
  plugin?: (agent: Agent) => ((req: Request) => Promise<Response | undefined>) | undefined;
}

export interface ProviderRuntime {
  spec: ProviderConfig;
  process: ProviderProcess;
  lastPoll?: { at: string; changed: number; errors: number };
  timer?: ReturnType<typeof setTimeout>;
}

function sameProvider(a: ProviderConfig, b: ProviderConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Agent {
  readonly log = rootLog.withTag("agent");
  readonly store: SecretStore;
  readonly providers = new Map<string, ProviderRuntime>();
  reloader!: Reloader;
  private config: DsoConfig;
  private docker!: Dockerode;
  private connection?: DockerConnection;
  private server?: Server<undefined>;
  private webhook?: Server<undefined>;
  private events?: DockerEventWatcher;
  private reconcileTimer?: ReturnType<typeof setInterval>;
  private swarm?: SwarmRotator;
  readonly volumes: DsoVolumes;
  private planned?: PlannedDelivery;
  private readonly startedAt = new Date();
  private stopping = false;
  readonly socketPath: string;

  constructor(
    config: DsoConfig,
    private readonly options: AgentOptions,
  ) {
    this.config = config;
    this.socketPath = options.socketPath ?? config.agent.socket;
    this.store = new SecretStore(config.agent.cache);
    this.store.setSpecs(config.secrets);
    this.volumes = new DsoVolumes({
      docker: () => this.docker,
      config: () => this.config,
      store: this.store,
      fetchValues: (names) => this.reloader.fetchValues(names),
      log: rootLog.withTag("volumes"),
    });
  }

  currentConfig(): DsoConfig {
    return this.config;
  }

  async start(): Promise<void> {
    this.connection = await this.connectDockerWithRetry();
    this.docker = this.connection.docker;
    this.syncProviders();
    this.planned = new PlannedDelivery(this.docker, {
      pluginDrivers: [pluginDriverName(this.socketPath)],
      preferProcfs: !(await remapsUserNamespaces(this.docker)),
      pluginVolumeDir: (volume) => this.volumes.mountpointOf(volume),
    });
    const deliver = this.options.deliver?.(this.docker) ?? this.planned.deliver;
    this.reloader = new Reloader({
      docker: this.docker,
      store: this.store,
      provider: (name) => this.providers.get(name)?.process,
      deliver,
      log: rootLog.withTag("reloader"),
      config: () => this.config,
    });
    if (await isSwarmManager(this.docker).catch(() => false)) {
      this.swarm = new SwarmRotator({
        docker: this.docker,
        config: () => this.config,
        fetchValues: (names) => this.reloader.fetchValues(names),
        log: rootLog.withTag("swarm"),
      });
      this.log.info("this daemon is a swarm manager: services are rotated by service updates");
    }
    this.server = startControlServer({
      socketPath: this.socketPath,
      group: this.config.agent.socketGroup,
      routes: apiRoutes(this),
      plugin: this.options.plugin?.(this),
      log: this.log,
    });
    this.log.info("agent listening", { socket: this.socketPath, docker: this.connection.host, api: this.connection.negotiatedApiVersion });
    const hook = this.config.agent.watch.webhook;
    if (hook.enabled && hook.authToken) {
      this.webhook = startWebhook({ listen: hook.listen, token: hook.authToken, onNotify: (n) => this.notify(n) });
      this.log.info("webhook listening", { listen: hook.listen });
    }
    this.events = new DockerEventWatcher({
      docker: this.docker,
      onEvent: (event) => this.onDockerEvent(event),
      onConnected: () => this.reconcileAndSeed(),
      log: rootLog.withTag("events"),
    });
    this.events.start();
    this.reconcileTimer = setInterval(() => void this.reconcileAndSeed(), RECONCILE_INTERVAL_MS);
    this.reconcileTimer.unref?.();
  }

  private async connectDockerWithRetry(): Promise<DockerConnection> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await connectDocker({ env: this.options.env });
      } catch (error) {
        if (this.stopping) throw error;
        if (attempt === 1) this.log.warn("Docker is not reachable yet; retrying", { error: describeError(error) });
        await Bun.sleep(DOCKER_RETRY_MS);
      }
    }
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
      const process = new ProviderProcess({
        configure: {
          name,
          type: spec.type,
          ...(spec.region ? { region: spec.region } : {}),
          auth: { ...(spec.auth.method ? { method: spec.auth.method } : {}), params: spec.auth.params },
          config: spec.config,
        },
        env: this.options.env,
      });
      const runtime: ProviderRuntime = { spec, process };
      this.providers.set(name, runtime);
      this.schedulePoll(runtime, 0);
    }
  }

  private schedulePoll(runtime: ProviderRuntime, delayMs: number): void {
    clearTimeout(runtime.timer);
    runtime.timer = setTimeout(() => void this.pollOnce(runtime), delayMs);
  }

  private async pollOnce(runtime: ProviderRuntime): Promise<void> {
    if (this.stopping || this.providers.get(runtime.spec.name) !== runtime) return;
    try {
      const outcome = await pollProvider(runtime.spec.name, runtime.process, this.store);
      runtime.lastPoll = { at: new Date().toISOString(), changed: outcome.changed.length, errors: outcome.errors.length };
      if (outcome.errors.length) {
        this.log.warn("poll found stale secrets", { provider: runtime.spec.name, stale: outcome.errors.map((e) => e.secret).join(",") });
      }
      if (outcome.changed.length) {
        this.log.info("secrets changed at the provider", { provider: runtime.spec.name, secrets: outcome.changed.join(",") });
        this.reloader?.secretsChanged(outcome.changed);
        void this.volumes.rotate(outcome.changed);
        if (this.swarm) void this.swarm.reconcile(new Set(outcome.changed));
      }
      // Secrets first seen now (seeded) may belong to running containers whose files are missing.
      if (outcome.seeded.length && this.reloader) void this.reloader.reconcile();
    } catch (error) {
      this.log.error("poll failed", { provider: runtime.spec.name, error: describeError(error) });
    } finally {
      if (!this.stopping) this.schedulePoll(runtime, jittered(this.config.agent.watch.pollingIntervalMs));
    }
  }

  /** The Docker plugin protocol on the agent socket (DSO volumes). */
  volumeDriverHandler(): (req: Request) => Promise<Response | undefined> {
    return this.volumes.handler();
  }

  /** A webhook notification: poll the named secret's provider (or the named one, or all) now. */
  private notify(notification: Notification): boolean {
    const providerName = notification.secret_name ? this.store.get(notification.secret_name)?.spec.provider : notification.provider;
    const named = notification.secret_name !== undefined || notification.provider !== undefined;
    const targets = named ? [this.providers.get(providerName ?? "")].filter((r) => r !== undefined) : [...this.providers.values()];
    for (const runtime of targets) this.schedulePoll(runtime, 0);
    this.log.info("webhook notification: polling now", { providers: targets.map((r) => r.spec.name).join(",") || "none" });
    return targets.length > 0;
  }

  private onDockerEvent(event: DockerEvent): void {
    if (event.Type !== "container") return;
    if (event.Action === "start" || event.Action === "die") this.planned?.invalidate(event.Actor.ID);
    if (event.Action === "start") void this.reloader.deliverToStarted(event.Actor.ID);
    else if (event.Action === "destroy") this.reloader.forget(event.Actor.ID);
  }

  private async reconcileAndSeed(): Promise<void> {
    try {
      await this.reloader.reconcile();
      if (this.swarm) await this.swarm.reconcile();
    } catch (error) {
      this.log.warn("reconcile failed", { error: describeError(error) });
    }
  }

  async sync(container?: string): Promise<ActionReport[]> {
    if (!container) return this.reloader.reconcile();
    const inspect = await this.docker.getContainer(container).inspect().catch(() => {
      throw new DsoError("BAD_REQUEST", `no such container: ${container}`);
    });
    const report = await this.reloader.deliverToStarted(inspect.Id);
    if (!report) throw new DsoError("BAD_REQUEST", `container ${container} is not running or has no DSO secrets`);
    return [report];
  }

  plan(secret: string) {
    const state = this.store.get(secret);
    if (!state) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
    return {
      secret,
      provider: state.spec.provider,
      containers: this.reloader.affectedBy([secret]).map((c) => ({
        id: c.id,
        name: c.name,
        strategy: c.strategy,
        paths: c.deliveries.map((d) => ({ path: d.path, mode: d.mode })),
        action: c.strategy === "none" ? "update files" : `update files, then ${c.strategy}`,
      })),
    };
  }

  status() {
    const providers: Array<ProviderStatus & { lastPoll?: ProviderRuntime["lastPoll"] }> = [...this.providers.values()].map((rt) => ({
      ...rt.process.getStatus(),
      lastPoll: rt.lastPoll,
    }));
    return {
      agent: {
        version: versionInfo().version,
        pid: process.pid,
        startedAt: this.startedAt.toISOString(),
        socket: this.socketPath,
        docker: this.connection ? { host: this.connection.host, api: this.connection.negotiatedApiVersion, connected: this.events?.connected ?? false } : undefined,
        cache: this.config.agent.cache,
        pollingIntervalMs: this.config.agent.watch.pollingIntervalMs,
      },
      providers,
      secrets: this.store.all().map((s) => ({
        name: s.spec.name,
        provider: s.spec.provider,
        version: s.version,
        fingerprint: s.fingerprint ? s.fingerprint.slice(0, 19) : undefined,
        lastPollAt: s.lastPollAt,
        lastChangeAt: s.lastChangeAt,
        stale: s.stale,
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
      this.store.setSpecs(config.secrets);
      this.syncProviders();
      this.log.info("configuration reloaded", { providers: Object.keys(config.providers).length, secrets: config.secrets.length });
      void this.reconcileAndSeed();
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
    await this.events?.stop();
    await this.reloader?.idle();
    await Promise.all([...this.providers.values()].map((rt) => rt.process.stop()));
    await this.webhook?.stop(true);
    await this.server?.stop(true);
  }
}
