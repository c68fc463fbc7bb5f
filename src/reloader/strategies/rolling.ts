import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { waitHealthy } from "./health.ts";
import { restartStrategy, RESTART_STOP_TIMEOUT_S } from "./restart.ts";
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

/** The create options that give a twin of `info` under another name. */
/**
 * POST /containers/create with the spec in the body and only the name in the query string.
 * docker-modem otherwise copies the whole spec into the URL (buildQuerystring), environment
 * values included, which dockerd's debug log prints for every request.
 */
export function createWithoutQuery(docker: Dockerode, spec: Dockerode.ContainerCreateOptions): Promise<Dockerode.Container> {
  const { name, ...body } = spec as Dockerode.ContainerCreateOptions & { name?: string };
  return docker.createContainer({ _query: name === undefined ? {} : { name }, _body: body } as unknown as Dockerode.ContainerCreateOptions);
}

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
    HostConfig: info.HostConfig,
    ...(Object.keys(endpoints).length ? { NetworkingConfig: { EndpointsConfig: endpoints } } : {}),
  } as Dockerode.ContainerCreateOptions;
}

/**
 * For a container that cannot run twice but needs new environment values: stop it, start a
 * replacement under its name, and put the old one back if the replacement does not come up.
 */
async function recreateInPlace(ctx: StrategyContext, info: Dockerode.ContainerInspectInfo): Promise<StrategyResult> {
  const old = ctx.docker.getContainer(ctx.containerId);
  const name = info.Name.replace(/^\//, "");
  const parked = `${name}${OLD_SUFFIX}${Date.now().toString(36)}`;
  await old.stop({ t: RESTART_STOP_TIMEOUT_S }).catch(() => {});
  await old.rename({ name: parked });
  let next: Dockerode.Container | undefined;
  try {
    next = await createWithoutQuery(ctx.docker, replacementSpec(info, name, ctx.env, ctx.labels));
    await next.start();
    await ctx.deliver(next.id);
    const outcome = await waitHealthy(ctx.docker, next.id, ctx.healthCheckTimeoutMs, ctx.abort);
    if (outcome !== "healthy") throw new DsoError("DELIVERY_FAILED", `replacement for ${name} did not become healthy (${outcome})`);
  } catch (error) {
    await next?.remove({ force: true }).catch(() => {});
    await old.rename({ name });
    const restored = await old.start().then(
      () => true,
      () => false,
    );
    const why = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new DsoError("DELIVERY_FAILED", restored ? `${why}; restored the old container` : `${why}; the old container could not be started again`, { cause: error });
  }
  await old.remove({ force: true });
  return { strategy: "rolling", action: "replaced", containerId: next.id, detail: `re-created in place (fixed host ports)` };
}

/**
 * Start a replacement with the same configuration, deliver its secrets, wait until it is healthy
 * (or has run for a grace period without a HEALTHCHECK), then stop and remove the old container
 * and give the replacement its name. On failure the replacement is removed and the old one keeps
 * running. Fixed host ports → restart instead, with a warning.
 */
export const rollingStrategy: Strategy = {
  name: "rolling",
  async apply(ctx: StrategyContext): Promise<StrategyResult> {
    const old = ctx.docker.getContainer(ctx.containerId);
    const info = await old.inspect();
    if (publishesFixedHostPorts(info)) {
      ctx.log.warn("container publishes fixed host ports and cannot run twice; replacing it in place instead", {
        container: ctx.containerName,
      });
      if (Object.keys(ctx.env).length > 0) return recreateInPlace(ctx, info);
      const result = await restartStrategy.apply(ctx);
      return { ...result, strategy: "rolling", detail: "fixed host ports: fell back to restart" };
    }
    const name = info.Name.replace(/^\//, "");
    const nextName = `${name}${NEXT_SUFFIX}${Date.now().toString(36)}`;
    const next = await createWithoutQuery(ctx.docker, replacementSpec(info, nextName, ctx.env, ctx.labels));
    try {
      await next.start();
      await ctx.deliver(next.id);
      const outcome = await waitHealthy(ctx.docker, next.id, ctx.healthCheckTimeoutMs, ctx.abort);
      if (outcome !== "healthy") {
        throw new DsoError("DELIVERY_FAILED", `replacement for ${name} did not become healthy (${outcome}); kept the old container`);
      }
    } catch (error) {
      await next.remove({ force: true }).catch(() => {});
      throw error;
    }
    await old.stop({ t: RESTART_STOP_TIMEOUT_S }).catch(() => {});
    await old.remove({ force: true });
    await next.rename({ name });
    return { strategy: "rolling", action: "replaced", containerId: next.id, detail: `replaced ${ctx.containerId.slice(0, 12)}` };
  },
};
