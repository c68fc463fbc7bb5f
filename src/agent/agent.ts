/**
 * `dso agent`: the lifecycle. It takes the socket's lock, opens the socket at once (the volume
 * driver answers dockerd before Docker itself answers: dockerd starts plugins before it restores
 * containers), starts the provider processes and their polls, and when dockerd answers — retrying
 * without limit — the Docker side: reconciler, events, timer. No value is kept on disk; records
 * needed across restarts (DSO volumes, the marker key) are on tmpfs (volume records on disk where
 * DSO_VOLUME_RECORDS says, for a reboot), and everything else is read back from Docker and the
 * containers.
 *
 * The parts: watcher/poll-scheduler.ts (polls), docker-side.ts (what needs dockerd), control.ts
 * (the control API's handlers), runtime.ts (the runtime shared with a direct `dso inject`).
 */
import type { Server } from "bun";
import { loadConfig } from "../config/index.ts";
import type { DsoConfig, ProviderConfig } from "../config/types.ts";
import { CALL_TIMEOUT_MS, type ProviderObserver, type ProviderProcess } from "../rpc/supervisor.ts";
import type { DockerConnection } from "../docker/client.ts";
import { secretNamesOf } from "../delivery/plugin/driver-options.ts";
import { describeError, DsoError, isErrorCode } from "../errors.ts";
import { log as rootLog } from "../log/logger.ts";
import { DsoVolumes } from "../reloader/volumes.ts";
import type { DockerEvent } from "../watcher/docker-events.ts";
import { type ChangeCause, ChangePath } from "../watcher/change-path.ts";
import { ChangeEventConsumer, ChangeEventConsumers } from "../watcher/event-queue.ts";
import { PollScheduler } from "../watcher/poll-scheduler.ts";
import { startWebhook } from "../watcher/webhook.ts";
import { versionInfo } from "../version.ts";
import { apiRoutes } from "./api-routes.ts";
import { AgentControl } from "./control.ts";
import { type ControlServer, startControlServer } from "./control-server.ts";
import { buildDockerSide, type DockerSide } from "./docker-side.ts";
import { Observer } from "../observe/observer.ts";
import { loadHostKey } from "./host-key.ts";
import { buildSecretsRuntime, providerProcess, type SecretsRuntime } from "./runtime.ts";
import { acquireSocketLock, type SocketLock } from "./socket-lock.ts";
import { ensureTmpfsRoot } from "./volumes-root.ts";
import { hardenProcess, type ProcessHardening } from "../os/libc.ts";
import { startAgentLeases } from "../leases/agent-leases.ts";
import type { LeaseKeeper } from "../leases/lease-keeper.ts";

/** Events can be dropped (the daemon keeps 256); reconcile all containers this often anyway. */
export const RECONCILE_INTERVAL_MS = 60_000;
/** How long an API call that needs Docker waits for the agent's first connection to it. */
export const DOCKER_READY_WAIT_MS = 15_000;

export interface AgentOptions {
  configPath: string | null;
  socketPath?: string;
  env: Record<string, string | undefined>;
  /**
   * The two boundaries, for a composition-root test (test/agent/composition-root.test.ts): how
   * dockerd is reached and how a provider instance's process is started. The binary uses the real ones.
   */
  boundaries?: AgentBoundaries;
}

export interface AgentBoundaries {
  connectDocker?: () => Promise<DockerConnection>;
  providerProcess?: (name: string, spec: ProviderConfig, hostKey: Uint8Array, observer: ProviderObserver) => ProviderProcess;
}

export class Agent {
  readonly log = rootLog.withTag("agent");
  readonly socketPath: string;
  polls!: PollScheduler;
  secrets!: SecretsRuntime;
  volumes!: DsoVolumes;
  /** Metrics, the audit trail and notifications: told what happened, never a value. */
  observer!: Observer;
  /** Dynamic (leased) credentials, issued per consumer (src/leases/). */
  leases?: LeaseKeeper;
  private config: DsoConfig;
  private lock?: SocketLock;
  private server?: ControlServer;
  private webhook?: Server<undefined>;
  private changeEvents!: ChangeEventConsumers;
  /** Every detected change, with its cause, to every target kind (buffered until the Docker side subscribes them). */
  private readonly changes = new ChangePath((error, change) =>
    this.log.error("a target kind failed to take a change", { cause: change.cause, secrets: change.names.length, error: describeError(error) }),
  );
  private side?: DockerSide;
  private sideReady: Promise<DockerSide>;
  private resolveSide!: (side: DockerSide) => void;
  private reconcileTimer?: ReturnType<typeof setInterval>;
  private readonly startedAt = new Date();
  private hardening: ProcessHardening = { dumpable: true, coreDumps: true };
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
    // Keys the version markers, Swarm secret names and each provider's fingerprints (host-key.ts).
    const hostKey = await loadHostKey(root);
    if (!hostKey.path) {
      this.log.warn(
        "no tmpfs for the host key (version markers, fingerprints, Swarm secret names): it lives in memory only, so an agent restart delivers every file set once more (no strategy runs) and updates every DSO Swarm service once",
        { root },
      );
    }
    this.secrets = buildSecretsRuntime({
      config: this.config,
      key: hostKey.key,
      provider: (name) => this.polls.process(name),
      log: rootLog.withTag("secrets"),
      onChanged: (names) => this.secretsChanged(names, "fetch"),
      dynamic: () => this.leases,
    });
    this.polls = new PollScheduler({
      store: this.secrets.store,
      log: this.log,
      intervalMs: () => this.config.agent.watch.pollingIntervalMs,
      startProcess: (name, spec) =>
        this.options.boundaries?.providerProcess
          ? this.options.boundaries.providerProcess(name, spec, hostKey.key, this.observer.forProvider(name))
          : providerProcess(name, spec, this.options.env, hostKey.key, this.observer.forProvider(name)),
      pollFinished: (p) => this.observer.pollFinished(p),
      onChanged: (names, trigger) => this.secretsChanged(names, trigger),
    });
    this.changeEvents = new ChangeEventConsumers((spec) => this.changeEventConsumer(spec));
    this.leases = await startAgentLeases({
      config: () => this.config,
      provider: (name) => this.polls.process(name),
      dir: root,
      hostKey: hostKey.key,
      log: rootLog.withTag("leases"),
      ...(this.observer.metrics ? { registry: this.observer.metrics.registry } : {}),
      // A replacement is announced like a polled change: the reconciler delivers it and runs the strategy once.
      onReplaceWanted: (names) => this.secretsChanged(names, "lease"),
      alarm: (p) => this.observer.leaseAtRisk(p),
    });
    this.volumes = this.buildVolumes();
    await this.volumes.start();
    this.polls.sync(this.config.providers);
    this.changeEvents.sync(this.config.providers);
    this.leases.run();
    const control = new AgentControl({
      docker: () => this.docker(),
      side: () => this.side,
      secrets: this.secrets,
      polls: this.polls,
      config: () => this.config,
      socketPath: this.socketPath,
      startedAt: this.startedAt,
      hardening: () => this.hardening,
      leases: () => this.leases,
    });
    this.server = startControlServer({
      socketPath: this.socketPath,
      group: this.config.agent.socketGroup,
      groupSocketPath: this.config.agent.groupSocket,
      routes: apiRoutes(control),
      plugin: this.volumes.handler(),
      rawRoutes: this.observer.rawRoutes(),
      onRequest: (info, callerUid) => this.observer.apiRequest(info, callerUid),
      log: this.log,
    });
    this.log.info("agent listening", { socket: this.socketPath, ...(this.config.agent.socketGroup ? { groupSocket: this.config.agent.groupSocket } : {}) });
    const hook = this.config.agent.watch.webhook;
    if (hook.enabled && hook.authToken) {
      this.webhook = startWebhook({ listen: hook.listen, token: hook.authToken, onNotify: (n) => this.polls.pollNow(n) });
      this.log.info("webhook listening", { listen: hook.listen });
    }
    void this.startDockerSide().catch((error) => this.log.error("the Docker side did not start", { error: describeError(error) }));
  }

  /** Every detected change goes this one way, whatever noticed it (`dso_change_detected_total{cause}`). */
  private secretsChanged(names: string[], cause: ChangeCause): void {
    if (names.length === 0) return;
    this.observer.changeDetected(cause, names.length);
    this.changes.publish({ names, cause });
  }

  /** Change detection by push for one provider (watcher/event-queue.ts); polling goes on beside it. */
  private changeEventConsumer(spec: ProviderConfig): ChangeEventConsumer {
    return new ChangeEventConsumer({
      provider: spec.name,
      source: () => this.polls.process(spec.name),
      store: this.secrets.store,
      log: this.log,
      callTimeoutMs: spec.timeoutMs ?? CALL_TIMEOUT_MS,
      onChanged: (names) => this.secretsChanged(names, "event"),
      counted: (outcome, count) => this.observer.changeEvent(spec.name, outcome, count),
      queueUp: (up) => this.observer.changeQueueUp(spec.name, up),
    });
  }

  /** The DSO volume driver; a Mount that fetched a new value starts a wave like a poll would. */
  private buildVolumes(): DsoVolumes {
    return new DsoVolumes({
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
        const error = call.error ? mountCallError(call.error) : undefined;
        const secrets = call.secrets.map((name) => ({ name }));
        if (call.route === "Mount") this.observer.volumeMounted({ volume: call.volume, mountId: call.mountId, secrets, seconds: call.seconds, ...(error ? { error } : {}) });
        else this.observer.volumeUnmounted({ volume: call.volume, mountId: call.mountId, ...(error ? { error } : {}) });
      },
      // Not a detected change (whatever found it was counted and published it): the volume's users
      // are looked at again, a wave only (no Swarm service uses a DSO volume; before the Docker
      // side connects, its first pass looks at every container anyway).
      onFilesChanged: (volume) => {
        const opts = this.volumes.optionsOf(volume);
        if (opts) this.side?.reconciler.waves.secretsChanged(secretNamesOf(opts), "mount");
      },
    });
  }

  /** Connects to dockerd (retrying forever), then starts everything that needs it. */
  private async startDockerSide(): Promise<void> {
    const side = await buildDockerSide({
      env: this.options.env,
      ...(this.options.boundaries?.connectDocker ? { connect: this.options.boundaries.connectDocker } : {}),
      config: () => this.config,
      socketPath: this.socketPath,
      secrets: this.secrets,
      volumes: this.volumes,
      observer: this.observer,
      log: this.log,
      pendingReason: (secret) => this.polls.pendingReason(secret),
      stopping: () => this.stopping,
      current: () => this.side,
      onEvent: (event) => this.onDockerEvent(event),
      reconcileAll: () => this.reconcileAll(),
    });
    if (!side) return;
    this.side = side;
    if (this.stopping) return;
    this.log.info("connected to Docker", { docker: side.connection.host, api: side.connection.negotiatedApiVersion });
    this.resolveSide(side);
    // The target kinds: containers and DSO volumes through the wave scheduler, Swarm services through their rotator.
    this.changes.subscribe((change) => side.reconciler.waves.secretsChanged([...change.names], change.cause));
    const swarm = side.swarm;
    if (swarm) {
      this.changes.subscribe((change) => {
        swarm.reconcile(new Set(change.names)).catch((error: unknown) => this.log.warn("swarm pass failed", { error: describeError(error) }));
      });
    }
    this.changes.open();
    side.events.start();
    this.reconcileTimer = setInterval(() => void this.reconcileAll(), RECONCILE_INTERVAL_MS);
    this.reconcileTimer.unref?.();
  }

  /** The Docker side, waiting a while for the first connection (API calls right after start). */
  async docker(): Promise<DockerSide> {
    if (this.side) return this.side;
    const timeout = Bun.sleep(DOCKER_READY_WAIT_MS).then(() => undefined);
    const side = await Promise.race([this.sideReady, timeout]);
    if (!side) throw new DsoError("DOCKER_UNREACHABLE", "the agent is not connected to Docker yet", { hint: "see the agent's log" });
    return side;
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
    if (event.Action === "start") side.reconciler.waves.containersChanged([id]);
    else if (event.Action === "destroy") {
      side.reconciler.forget(id);
      this.leases?.consumerRemoved(id);
    }
  }

  private async reconcileAll(): Promise<void> {
    const side = this.side;
    if (!side || this.stopping) return;
    try {
      await side.reconciler.reconcileAll({ full: true });
      if (this.leases?.views().length) {
        // Leases of containers removed while the agent was away would otherwise live to their TTL.
        const listedAt = Date.now();
        const all = await side.docker.listContainers({ all: true });
        this.leases.retainConsumers(new Set(all.map((c) => c.Id)), listedAt);
      }
      if (side.swarm) await side.swarm.reconcile();
    } catch (error) {
      this.log.warn("reconcile failed", { error: describeError(error) });
    }
  }

  /** SIGHUP: load the config again; an invalid one is logged and the old one kept. */
  async reload(): Promise<boolean> {
    try {
      const { config, warnings } = await loadConfig(this.options.configPath, this.options.env);
      for (const w of warnings) this.log.warn(`config: ${w.path}: ${w.message}`);
      this.config = config;
      this.secrets.store.setSpecs(config.secrets);
      this.polls.sync(config.providers);
      this.changeEvents.sync(config.providers);
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
    this.polls?.halt();
    await this.changeEvents?.stop();
    await this.side?.events.stop();
    if (this.side) {
      clearInterval(this.side.sentinel.timer);
      clearInterval(this.side.leftovers.timer);
      this.side.sentinel.sentinel.stop();
    }
    this.side?.reconciler.waves.stop();
    this.side?.swarm?.stop();
    await this.side?.reconciler.idle();
    await this.leases?.stop();
    await this.polls?.stopProcesses();
    await this.webhook?.stop(true);
    await this.server?.stop(true);
    await this.observer?.stop();
    this.lock?.release();
  }
}

/** The driver's Err ("dso: CODE: message") as an error with its own code, for audit and notifications. */
function mountCallError(err: string): DsoError {
  const match = /^dso: ([A-Z_]+): (.*)$/s.exec(err);
  if (match && isErrorCode(match[1]!)) return new DsoError(match[1], match[2]!);
  return new DsoError("DELIVERY_FAILED", err);
}
