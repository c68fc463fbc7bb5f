/**
 * `rolling`: a replacement with the same configuration and storage is started beside the old
 * container, given the new files, and takes over once healthy; the old container is not touched
 * (its files included) until then, so a failed replacement is a true rollback. A container that
 * cannot run twice (fixed host ports) or whose writable volumes and binds two containers must not
 * write at once is replaced in place instead (stop, then start), with a warning that says why.
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { waitHealthy } from "./health.ts";
import { RESTART_STOP_TIMEOUT_S } from "./restart.ts";
import { describeStartError, describeUnhealthy, RollbackError } from "./rollback.ts";
import { describeShared, hostConfigKeepingVolumes, sharesStorageByChoice, SHARED_STORAGE_LABEL, writableSharedStorage } from "./storage.ts";
import type { Strategy, StrategyContext, StrategyResult } from "./types.ts";

type Inspect = Dockerode.ContainerInspectInfo;

/** Name suffixes of a replacement being started and of an original parked during re-creation. */
export const NEXT_SUFFIX = "-dso-next-";
export const OLD_SUFFIX = "-dso-old-";

/** A container that binds fixed host ports cannot run twice at once. */
export function publishesFixedHostPorts(info: Inspect): boolean {
  const bindings = info.HostConfig.PortBindings as Record<string, Array<{ HostPort?: string }> | null> | undefined;
  return Object.values(bindings ?? {}).some((list) => (list ?? []).some((b) => b.HostPort && b.HostPort !== "0"));
}

function mergeLabels(current: Record<string, string> | undefined, overrides: Record<string, string>): Record<string, string> {
  return { ...(current ?? {}), ...overrides };
}

function mergeEnv(current: string[] | undefined, overrides: Record<string, string>): string[] {
  const keys = new Set(Object.keys(overrides));
  const kept = (current ?? []).filter((entry) => !keys.has(entry.split("=")[0]!));
  return [...kept, ...Object.entries(overrides).map(([k, val]) => `${k}=${val}`)];
}

/**
 * POST /containers/create with the spec in the body and only the name in the query string.
 * docker-modem otherwise copies the whole spec into the URL (buildQuerystring), environment
 * values included, which dockerd's debug log prints for every request.
 */
export function createWithoutQuery(docker: Dockerode, spec: Dockerode.ContainerCreateOptions): Promise<Dockerode.Container> {
  const { name, ...body } = spec as Dockerode.ContainerCreateOptions & { name?: string };
  return docker.createContainer({ _query: name === undefined ? {} : { name }, _body: body } as unknown as Dockerode.ContainerCreateOptions);
}

/** The create options that give a twin of `info` under another name. */
export function replacementSpec(info: Inspect, name: string, env: Record<string, string>, labels: Record<string, string> = {}): Dockerode.ContainerCreateOptions {
  const { Hostname: _hostname, ...config } = info.Config;
  const networks = info.NetworkSettings?.Networks ?? {};
  const endpoints = Object.fromEntries(
    Object.entries(networks)
      .filter(([net]) => !["none", "host", "bridge"].includes(net))
      .map(([net, ep]) => [net, { Aliases: (ep.Aliases ?? []).filter((a: string) => !info.Id.startsWith(a)), IPAMConfig: ep.IPAMConfig }]),
  );
  return {
    ...config,
    // The image the container runs (by id), not whatever its tag points at today.
    Image: info.Image,
    name,
    Env: mergeEnv(info.Config.Env, env),
    Labels: mergeLabels(info.Config.Labels, labels),
    // Its anonymous volumes by name: a new, empty one would lose the data (as compose does).
    HostConfig: hostConfigKeepingVolumes(info),
    ...(Object.keys(endpoints).length ? { NetworkingConfig: { EndpointsConfig: endpoints } } : {}),
  } as Dockerode.ContainerCreateOptions;
}

/** Why old and replacement cannot run side by side; undefined when they can. `optedIn`: see storage.ts. */
export function whyNotSideBySide(info: Inspect, secretPaths: readonly string[], optedIn: boolean): string | undefined {
  if (publishesFixedHostPorts(info)) return "it publishes fixed host ports and cannot run twice";
  if (optedIn) return undefined;
  const shared = writableSharedStorage(info, secretPaths);
  if (shared.length === 0) return undefined;
  return `it writes to ${describeShared(shared)}, which two containers must not write at once (label it ${SHARED_STORAGE_LABEL}=true to run both)`;
}

/** Start, deliver, wait healthy; a reason when it did not come up. */
async function bringUp(ctx: StrategyContext, next: Dockerode.Container): Promise<string | undefined> {
  try {
    await next.start();
  } catch (error) {
    return describeStartError(error);
  }
  await ctx.deliver(next.id);
  const outcome = await waitHealthy(ctx.docker, next.id, ctx.healthCheckTimeoutMs, ctx.abort);
  return outcome === "healthy" ? undefined : describeUnhealthy(ctx.docker, next.id, outcome, ctx.healthCheckTimeoutMs);
}

/**
 * Files only, but the container cannot run twice: restart it in place (same container: its
 * volumes and writable layer stay), give it the files, wait until it is healthy.
 */
async function restartInPlace(ctx: StrategyContext, why: string): Promise<StrategyResult> {
  const container = ctx.docker.getContainer(ctx.containerId);
  try {
    await container.restart({ t: RESTART_STOP_TIMEOUT_S });
  } catch (error) {
    throw new DsoError("DELIVERY_FAILED", `restart in place ${describeStartError(error)}`, { cause: error });
  }
  await ctx.deliver(ctx.containerId);
  const outcome = await waitHealthy(ctx.docker, ctx.containerId, ctx.healthCheckTimeoutMs, ctx.abort);
  if (outcome !== "healthy") {
    const reason = await describeUnhealthy(ctx.docker, ctx.containerId, outcome, ctx.healthCheckTimeoutMs);
    throw new DsoError("DELIVERY_FAILED", `restarted in place (${why}) and ${reason}`);
  }
  return { strategy: "rolling", action: "restarted", containerId: ctx.containerId, detail: `restarted in place: ${why}` };
}

/**
 * New environment values, but the container cannot run twice: stop it, start a replacement with
 * its storage under its name, and put the old one back if the replacement does not come up.
 */
async function recreateInPlace(ctx: StrategyContext, info: Inspect, why: string): Promise<StrategyResult> {
  const old = ctx.docker.getContainer(ctx.containerId);
  const name = info.Name.replace(/^\//, "");
  const parked = `${name}${OLD_SUFFIX}${Date.now().toString(36)}`;
  await old.stop({ t: RESTART_STOP_TIMEOUT_S }).catch(() => {});
  await old.rename({ name: parked });
  let next: Dockerode.Container | undefined;
  let reason: string | undefined;
  try {
    next = await createWithoutQuery(ctx.docker, replacementSpec(info, name, ctx.env, ctx.labels));
    reason = await bringUp(ctx, next);
  } catch (error) {
    reason = "failed: " + (error instanceof Error ? error.message.split("\n")[0]! : String(error));
  }
  if (!reason) {
    await old.remove({ force: true });
    return { strategy: "rolling", action: "replaced", containerId: next!.id, detail: `re-created in place: ${why}` };
  }
  await next?.remove({ force: true }).catch(() => {});
  await old.rename({ name });
  const restarted = await old.start().then(
    () => true,
    (error: unknown) => describeStartError(error),
  );
  if (restarted !== true) throw new DsoError("DELIVERY_FAILED", `replacement for ${name} ${reason}; the old container could not be started again: ${restarted}`);
  // The stop emptied its tmpfs: it gets this pass's files again, not nothing.
  await ctx.deliver(ctx.containerId).catch(() => {});
  throw new RollbackError(`replacement ${reason}`, "new-files");
}

/** Old and replacement side by side: the old container is touched only once the replacement is healthy. */
async function replaceSideBySide(ctx: StrategyContext, info: Inspect): Promise<StrategyResult> {
  const old = ctx.docker.getContainer(ctx.containerId);
  const name = info.Name.replace(/^\//, "");
  const nextName = `${name}${NEXT_SUFFIX}${Date.now().toString(36)}`;
  const next = await createWithoutQuery(ctx.docker, replacementSpec(info, nextName, ctx.env, ctx.labels));
  let reason: string | undefined;
  try {
    reason = await bringUp(ctx, next);
  } catch (error) {
    reason = `failed: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`;
  }
  if (reason) {
    await next.remove({ force: true }).catch(() => {});
    throw new RollbackError(`replacement ${reason}`, "old-files");
  }
  await old.stop({ t: RESTART_STOP_TIMEOUT_S }).catch(() => {});
  await old.remove({ force: true });
  await next.rename({ name });
  return { strategy: "rolling", action: "replaced", containerId: next.id, detail: `replaced ${ctx.containerId.slice(0, 12)}` };
}

export const rollingStrategy: Strategy = {
  name: "rolling",
  async apply(ctx: StrategyContext): Promise<StrategyResult> {
    const info = await ctx.docker.getContainer(ctx.containerId).inspect();
    const why = whyNotSideBySide(info, ctx.secretPaths, await sharesStorageByChoice(ctx.docker, info));
    if (!why) return replaceSideBySide(ctx, info);
    ctx.log.warn(`container ${ctx.containerName}: ${why}; replacing it in place (stop, then start), keeping its volumes`, { container: ctx.containerName });
    if (Object.keys(ctx.env).length === 0) return restartInPlace(ctx, why);
    return recreateInPlace(ctx, info, why);
  },
};
