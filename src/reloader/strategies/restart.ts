import type { Strategy, StrategyContext } from "./types.ts";

export const RESTART_STOP_TIMEOUT_S = 10;

/**
 * Restart in place. A --tmpfs or tmpfs volume is emptied by the restart, so the files are
 * delivered again right after the start (plugin volumes are filled by Mount before it).
 */
export async function restartContainer(ctx: StrategyContext): Promise<void> {
  await ctx.docker.getContainer(ctx.containerId).restart({ t: RESTART_STOP_TIMEOUT_S });
  await ctx.deliver(ctx.containerId);
}

export const restartStrategy: Strategy = {
  name: "restart",
  async apply(ctx) {
    await restartContainer(ctx);
    return { strategy: "restart", action: "restarted", containerId: ctx.containerId };
  },
};
