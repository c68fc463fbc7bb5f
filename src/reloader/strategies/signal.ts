/**
 * `signal`: the new files are in place, then the configured signal (SIGHUP by default). With a
 * HEALTHCHECK the container is watched for health_check_timeout; one that turns unhealthy gets
 * its previous files back (the delivery kept them, see reloader/previous-files.ts), is signalled
 * again to re-read them, and the rotation is reported as rolled back, as `rolling` does. Where the
 * previous files cannot be restored (a mode that keeps none, the container exited), it is
 * restarted as before, and the report says why the files could not be restored.
 */
import { restartContainer } from "./restart.ts";
import { HEALTH_POLL_MS, turnsUnhealthy } from "./health.ts";
import { describeUnhealthy, RollbackError } from "./rollback.ts";
import type { Strategy, StrategyContext, StrategyResult } from "./types.ts";

function hasHealthcheck(test: string[] | undefined): boolean {
  return test !== undefined && test.length > 0 && test[0] !== "NONE";
}

/** Restart on the new files: the previous ones could not be restored (`why`). */
async function escalate(ctx: StrategyContext, unhealthy: string, why: string): Promise<StrategyResult> {
  const detail = `${unhealthy}; the previous files could not be restored (${why}); restarted it on the new files`;
  ctx.log.warn(`container ${ctx.containerName}: ${detail}`, { container: ctx.containerName });
  await restartContainer(ctx);
  return { strategy: "signal", action: "escalated-to-restart", containerId: ctx.containerId, detail };
}

/**
 * Whether the container is healthy again within the window. Docker says `unhealthy` until a check
 * passes, so that status is waited through, not taken as the answer.
 */
async function healthyAgain(ctx: StrategyContext): Promise<boolean> {
  const deadline = Date.now() + ctx.healthCheckTimeoutMs;
  while (Date.now() < deadline && !ctx.abort.aborted) {
    const state = (await ctx.docker.getContainer(ctx.containerId).inspect()).State;
    if (!state.Running) return false;
    if (state.Health?.Status === "healthy") return true;
    await Bun.sleep(HEALTH_POLL_MS);
  }
  return false;
}

export const signalStrategy: Strategy = {
  name: "signal",
  async apply(ctx) {
    const container = ctx.docker.getContainer(ctx.containerId);
    await container.kill({ signal: ctx.signal });
    const signalled: StrategyResult = { strategy: "signal", action: "signalled", containerId: ctx.containerId, detail: ctx.signal };
    const info = await container.inspect();
    if (!hasHealthcheck(info.Config.Healthcheck?.Test)) return signalled;
    if (!(await turnsUnhealthy(ctx.docker, ctx.containerId, ctx.healthCheckTimeoutMs, ctx.abort))) return signalled;
    const now = await container.inspect();
    const outcome = now.State.Running ? "unhealthy" : "exited";
    const described = await describeUnhealthy(ctx.docker, ctx.containerId, outcome, ctx.healthCheckTimeoutMs);
    // "unhealthy after SIGHUP: its HEALTHCHECK failed …" / "exited with code 1 … after SIGHUP"
    const unhealthy = outcome === "unhealthy" ? described.replace(/^unhealthy: /, `unhealthy after ${ctx.signal}: `) : `${described} after ${ctx.signal}`;
    // A stopped container's tmpfs is gone with its process: nothing to switch back to.
    if (outcome === "exited") return escalate(ctx, unhealthy, "the container stopped, and its tmpfs with it");
    const report = await ctx.restorePrevious();
    if (report.restored.length === 0 || report.notRestored.length > 0) {
      return escalate(ctx, unhealthy, report.notRestored.join("; ") || "no file target changed");
    }
    await container.kill({ signal: ctx.signal });
    const after = (await healthyAgain(ctx)) ? "healthy again" : `not healthy again within ${Math.round(ctx.healthCheckTimeoutMs / 1000)}s`;
    throw new RollbackError(`${unhealthy}; previous files restored, signalled again, ${after}`, "signalled-back");
  },
};
