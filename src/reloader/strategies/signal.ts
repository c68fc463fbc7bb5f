import { restartContainer } from "./restart.ts";
import { turnsUnhealthy } from "./health.ts";
import type { Strategy } from "./types.ts";

/**
 * Send the configured signal (SIGHUP by default). With a HEALTHCHECK, watch it for
 * health_check_timeout: a container that turns unhealthy is restarted, and that is reported.
 */
export const signalStrategy: Strategy = {
  name: "signal",
  async apply(ctx) {
    const container = ctx.docker.getContainer(ctx.containerId);
    await container.kill({ signal: ctx.signal });
    const info = await container.inspect();
    if (!info.Config.Healthcheck || info.Config.Healthcheck.Test?.[0] === "NONE") {
      return { strategy: "signal", action: "signalled", containerId: ctx.containerId, detail: ctx.signal };
    }
    if (!(await turnsUnhealthy(ctx.docker, ctx.containerId, ctx.healthCheckTimeoutMs, ctx.abort))) {
      return { strategy: "signal", action: "signalled", containerId: ctx.containerId, detail: ctx.signal };
    }
    ctx.log.warn("container turned unhealthy after the signal; restarting it", { container: ctx.containerName });
    await restartContainer(ctx);
    return { strategy: "signal", action: "escalated-to-restart", containerId: ctx.containerId, detail: `unhealthy after ${ctx.signal}` };
  },
};
