/**
 * The control API's handlers (`dso status`, `ls`, `sync`, `rotate`, `plan`, `inject`): each one
 * asks the agent's parts and answers with names, versions and modes, never a value. The routes
 * that call them are api-routes.ts.
 */
import { outputViews } from "../templates/outputs.ts";
import type { ActionReport, ContainerView, InjectReport, PlanReply, StatusReply } from "../api/contract.ts";
import type { DsoConfig } from "../config/types.ts";
import { describeError, DsoError } from "../errors.ts";
import type { ProcessHardening } from "../os/libc.ts";
import { versionInfo } from "../version.ts";
import type { LeftoverReference } from "../watcher/leftover-references.ts";
import type { PollScheduler } from "../watcher/poll-scheduler.ts";
import type { ControlApi } from "./api-routes.ts";
import type { DockerSide } from "./docker-side.ts";
import type { SecretsRuntime } from "./runtime.ts";
import type { LeaseKeeper } from "../leases/lease-keeper.ts";

export interface ControlDeps {
  /** The Docker side, waiting a while for the agent's first connection to dockerd. */
  docker(): Promise<DockerSide>;
  /** The Docker side if connected already (status never waits). */
  side(): DockerSide | undefined;
  secrets: SecretsRuntime;
  polls: PollScheduler;
  config(): DsoConfig;
  socketPath: string;
  startedAt: Date;
  hardening(): ProcessHardening;
  /** Dynamic credentials' leases (src/leases/), if the agent keeps any. */
  leases?(): LeaseKeeper | undefined;
}

export class AgentControl implements ControlApi {
  constructor(private readonly deps: ControlDeps) {}

  async sync(container?: string): Promise<ActionReport[]> {
    const { docker, reconciler } = await this.deps.docker();
    if (!container) {
      const [containers, services] = await Promise.all([reconciler.reconcileAll({ full: true, trigger: "sync" }), this.swarmPass()]);
      return [...containers, ...services];
    }
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
    if (!this.deps.secrets.store.get(secret)) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
    const { reconciler } = await this.deps.docker();
    // Swarm services are rotated by their own pass: without it a secret only services use waited
    // for the next poll that noticed a change (or the 60 s pass).
    const [containers, services] = await Promise.all([reconciler.reconcileAll({ only: new Set([secret]), refresh: true, trigger: "rotate" }), this.swarmPass(new Set([secret]), true)]);
    return [...containers, ...services];
  }

  /** The Swarm rotator's pass (on a manager), its services reported like containers. */
  private async swarmPass(only?: Set<string>, refresh = false): Promise<ActionReport[]> {
    const swarm = (await this.deps.docker()).swarm;
    if (!swarm) return [];
    // The container pass has acted already: a failed Swarm pass (node demoted, daemon error) is a
    // report of its own, never a reason to lose the containers' reports.
    const reports = await swarm.reconcile(only, { refresh }).catch((error: unknown) => [{ service: "(swarm)", action: "failed" as const, secrets: [...(only ?? [])], error: describeError(error) }]);
    return reports.map((r) => ({
      container: `service ${r.service}`,
      name: r.service,
      delivered: r.action === "updated" ? r.secrets : [],
      ...(r.action === "updated" ? { action: "replaced" as const } : {}),
      ...(r.error ? { error: r.error } : {}),
    }));
  }

  async plan(secret: string): Promise<PlanReply> {
    const state = this.deps.secrets.store.get(secret);
    if (!state) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
    const { reconciler } = await this.deps.docker();
    return {
      secret,
      provider: state.spec.provider,
      containers: reconciler
        .list()
        .filter((c) => c.secrets.includes(secret))
        .map((c) => ({
          id: c.id,
          name: c.name,
          strategy: c.strategy,
          paths: [...new Map(c.status.filter((s) => s.name === secret).map((s) => [s.path, { path: s.path, mode: s.mode ?? "?" }])).values()],
          action: c.strategy === "none" ? "update files" : `update files, then ${c.strategy}`,
        })),
      outputs: outputViews(this.deps.secrets.store.all().map((s) => s.spec), secret),
    };
  }

  async inject(container: string, secrets: string[]): Promise<InjectReport> {
    const { reconciler } = await this.deps.docker();
    return reconciler.inject(container, secrets);
  }

  async containers() {
    const side = await this.deps.docker();
    return [...side.reconciler.list().map((c) => this.withLeases(c)), ...side.leftovers.watch.list().map(leftoverView)];
  }

  /** Each dynamic secret's row of a container gets that consumer's lease expiry and last renewal. */
  private withLeases<T extends { id: string; status: Array<{ name: string }> }>(c: T): T {
    const keeper = this.deps.leases?.();
    if (!keeper) return c;
    const views = keeper.views().filter((l) => l.state === "active");
    const status = c.status.map((s) => {
      if (!keeper.isDynamic(s.name)) return s;
      const lease = views.find((l) => l.secret === s.name && l.consumer === keeper.consumerOf(s.name, c.id));
      if (!lease) return { ...s, state: "pending: issue" };
      return { ...s, state: lease.replaceWanted ? "pending: replacement" : "leased", lease: { expiresAt: lease.expiresAt, ...(lease.lastRenewalAt ? { lastRenewalAt: lease.lastRenewalAt } : {}) } };
    });
    return { ...c, status };
  }

  status(): StatusReply {
    const side = this.deps.side();
    const connection = side?.connection;
    const config = this.deps.config();
    const { store, markers } = this.deps.secrets;
    return {
      agent: {
        version: versionInfo().version,
        pid: process.pid,
        startedAt: this.deps.startedAt.toISOString(),
        socket: this.deps.socketPath,
        docker: connection ? { host: connection.host, api: connection.negotiatedApiVersion, connected: side?.events.connected ?? false } : undefined,
        cache: config.agent.cache,
        pollingIntervalMs: config.agent.watch.pollingIntervalMs,
        hardening: this.deps.hardening(),
      },
      providers: this.deps.polls.statuses(),
      secrets: store.all().map((s) => ({
        name: s.spec.name,
        provider: s.spec.provider,
        version: s.version,
        // A keyed token, never the provider's fingerprint itself (which may be a hash of the value).
        fingerprint: s.fingerprint ? markers.token(s.spec.name, s.fingerprint) : undefined,
        lastPollAt: s.lastPollAt,
        lastChangeAt: s.lastChangeAt,
        stale: s.stale,
        state: s.spec.lease
          ? `dynamic: issued per ${s.spec.lease.scope === "shared" ? "agent (shared)" : "container"}`
          : s.stale
          ? `stale: provider ${s.spec.provider} unavailable since ${s.staleSince?.slice(11, 16) ?? "?"}`
          : s.fingerprint
            ? "current"
            : `pending: ${this.deps.polls.pendingReason(s.spec.name)}`,
        error: s.error,
      })),
      ...(this.deps.leases?.() ? { leases: this.deps.leases()!.views() } : {}),
    };
  }
}

/** A container with literal references, as a `dso ls` row: no secret of DSO's, an error that says why. */
function leftoverView(found: LeftoverReference): ContainerView {
  return {
    id: found.id,
    name: found.name,
    strategy: "none",
    secrets: [],
    deliveries: [],
    versions: {},
    status: [],
    observedAt: new Date().toISOString(),
    error: `literal reference in its environment (${found.variables.join(", ")}): not brought up with dso up, the application sees the reference, not the secret`,
  };
}
