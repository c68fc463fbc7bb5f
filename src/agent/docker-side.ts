/**
 * The agent's Docker side, started once dockerd answers (retrying without limit): the delivery
 * planner and the reconciler over it, the Swarm rotator on a manager, the event stream, and the
 * leak sentinel. DSO volumes dockerd knows but the driver has no record of are taken back first,
 * and rolling replacements a killed agent left half done are settled.
 */
import type Dockerode from "dockerode";
import { pluginDriverName, type DeliveryPlanner } from "../delivery/planner.ts";
import { connectDocker, type DockerConnection } from "../docker/client.ts";
import { describeError } from "../errors.ts";
import { log as rootLog, type FieldLogger } from "../log/logger.ts";
import type { Observer } from "../observe/observer.ts";
import type { Reconciler } from "../reloader/reconciler.ts";
import { recoverInterruptedReplacements } from "../reloader/strategies/recovery.ts";
import { isSwarmManager, SwarmRotator } from "../reloader/swarm.ts";
import type { DsoVolumes } from "../reloader/volumes.ts";
import { DockerEventWatcher, type DockerEvent } from "../watcher/docker-events.ts";
import { LeakSentinel } from "../watcher/leak-sentinel.ts";
import { LeftoverReferenceWatch } from "../watcher/leftover-references.ts";
import type { DsoConfig } from "../config/types.ts";
import { buildReconciler, type SecretsRuntime } from "./runtime.ts";
import { reviveStrandedContainers } from "./revive.ts";

export const DOCKER_RETRY_MS = 2_000;
/** How often the leak sentinel picks up containers DSO started serving (and drops gone ones). */
const LEAK_SENTINEL_SYNC_MS = 2_000;
/** How often running containers are checked for literal dso:// references (one inspect per new container). */
const LEFTOVER_PASS_MS = 5_000;

export interface DockerSide {
  connection: DockerConnection;
  docker: Dockerode;
  planner: DeliveryPlanner;
  reconciler: Reconciler;
  swarm?: SwarmRotator;
  events: DockerEventWatcher;
  sentinel: { sentinel: LeakSentinel; timer: ReturnType<typeof setInterval> };
  leftovers: { watch: LeftoverReferenceWatch; timer: ReturnType<typeof setInterval> };
}

export interface DockerSideDeps {
  env: Record<string, string | undefined>;
  /** How dockerd is reached; connectDocker({ env }) unless a test gives a fake. */
  connect?: () => Promise<DockerConnection>;
  config: () => DsoConfig;
  socketPath: string;
  secrets: SecretsRuntime;
  volumes: DsoVolumes;
  observer: Observer;
  log: FieldLogger;
  pendingReason: (secret: string) => string;
  stopping: () => boolean;
  /** The side being built (its Swarm rotator, for the secrets a full pass must keep). */
  current: () => DockerSide | undefined;
  onEvent: (event: DockerEvent) => void;
  /** The event stream (re)connected: events may have been missed. */
  reconcileAll: () => Promise<void>;
}

/** Connects to dockerd (retrying until the agent stops) and builds the Docker side; events not started yet. */
export async function buildDockerSide(deps: DockerSideDeps): Promise<DockerSide | undefined> {
  const connection = await connectDockerWithRetry(deps);
  if (!connection) return undefined;
  const docker = connection.docker;
  const { planner, reconciler } = await buildReconciler({
    docker,
    secrets: deps.secrets,
    config: deps.config,
    socketPath: deps.socketPath,
    volumes: deps.volumes,
    log: rootLog.withTag("reconciler"),
    pendingReason: deps.pendingReason,
    observer: deps.observer,
    usedElsewhere: () => deps.current()?.swarm?.secretNames() ?? [],
  });
  const swarm = (await isSwarmManager(docker).catch(() => false))
    ? new SwarmRotator({
        docker,
        store: deps.secrets.store,
        config: deps.config,
        source: deps.secrets.source,
        markers: deps.secrets.markers,
        log: rootLog.withTag("swarm"),
      })
    : undefined;
  if (swarm) deps.log.info("this daemon is a swarm manager: services are rotated by service updates");
  await adoptKnownVolumes(docker, deps);
  let connectedOnce = false;
  await recoverInterruptedReplacements(docker, deps.log).catch((error) => deps.log.warn("could not check for interrupted rotations", { error: describeError(error) }));
  const events = new DockerEventWatcher({
    docker,
    onEvent: deps.onEvent,
    onConnected: async () => {
      if (connectedOnce) deps.observer.dockerEventsReconnected();
      connectedOnce = true;
      // Containers dockerd could not start while this driver was away (it does not retry them).
      await reviveStrandedContainers({ docker, drivers: [pluginDriverName(deps.socketPath)], log: deps.log });
      // Start and die events may have been missed: every plan is suspect, every container is looked at.
      planner.invalidateAll();
      await deps.reconcileAll();
    },
    log: rootLog.withTag("events"),
  });
  const sentinel = startLeakSentinel(docker, reconciler, deps);
  return { connection, docker, planner, reconciler, swarm, events, sentinel, leftovers: startLeftoverWatch(docker, deps) };
}

/** Containers running with a literal dso:// or dsofile:// reference: warned, audited, counted, in `dso ls`. */
function startLeftoverWatch(docker: Dockerode, deps: DockerSideDeps): DockerSide["leftovers"] {
  const log = rootLog.withTag("references");
  const watch = new LeftoverReferenceWatch({
    docker,
    log,
    onFound: (found) => {
      log.warn("a container runs with a literal dso:// or dsofile:// reference in its environment: it was not brought up with dso up", {
        container: found.name,
        variables: found.variables.join(","),
      });
      deps.observer.leftoverReference({ container: { id: found.id, name: found.name }, variables: found.variables });
    },
    onCount: (count) => deps.observer.leftoverReferenceCount(count),
  });
  let running = false;
  const tick = () => {
    if (running || deps.stopping()) return;
    running = true;
    void watch.pass().finally(() => (running = false));
  };
  const timer = setInterval(tick, LEFTOVER_PASS_MS);
  timer.unref?.();
  tick();
  return { watch, timer };
}

/**
 * The leak sentinel follows the containers DSO serves while `agent.leak_sentinel.enabled` is on
 * (read at every tick, so a config reload turns it on or off).
 */
function startLeakSentinel(docker: Dockerode, reconciler: Reconciler, deps: DockerSideDeps): DockerSide["sentinel"] {
  const log = rootLog.withTag("leak-sentinel");
  const sentinel = new LeakSentinel({
    docker,
    log,
    onSighting: (s) => {
      if (s.reported) log.warn("a value DSO delivered appeared in a container's output", { container: s.container.name, secret: s.secret ?? "(a provider credential)" });
      deps.observer.leakDetected({ container: s.container, ...(s.secret ? { secret: s.secret } : {}), reported: s.reported });
    },
  });
  const tick = () => sentinel.sync(deps.config().agent.leakSentinel.enabled && !deps.stopping() ? reconciler.list().map((c) => ({ id: c.id, name: c.name })) : []);
  const timer = setInterval(tick, LEAK_SENTINEL_SYNC_MS);
  timer.unref?.();
  tick();
  return { sentinel, timer };
}

async function connectDockerWithRetry(deps: DockerSideDeps): Promise<DockerConnection | undefined> {
  for (let attempt = 1; !deps.stopping(); attempt++) {
    try {
      return await (deps.connect ? deps.connect() : connectDocker({ env: deps.env }));
    } catch (error) {
      if (attempt === 1) deps.log.warn("Docker is not reachable yet; retrying", { error: describeError(error) });
      await Bun.sleep(DOCKER_RETRY_MS);
    }
  }
  return undefined;
}

/** DSO volumes dockerd knows but this driver has no record of (records lost): take them back. */
async function adoptKnownVolumes(docker: Dockerode, deps: DockerSideDeps): Promise<void> {
  try {
    const names = [pluginDriverName(deps.socketPath)];
    const { Volumes } = (await docker.listVolumes({ filters: { driver: names } })) as { Volumes?: Array<{ Name: string; Options?: Record<string, string> | null }> | null };
    const adopted = await deps.volumes.adopt((Volumes ?? []).map((vol) => ({ name: vol.Name, opts: vol.Options ?? {} })));
    if (adopted.length) deps.log.info("took back DSO volumes dockerd knows", { volumes: adopted.join(",") });
  } catch (error) {
    deps.log.warn("could not list DSO volumes from dockerd", { error: describeError(error) });
  }
}
