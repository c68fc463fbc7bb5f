import type Dockerode from "dockerode";

export const HEALTH_POLL_MS = 500;
/** Without a HEALTHCHECK, a replacement counts as up after running this long. */
export const RUNNING_GRACE_MS = 2_000;

export type HealthOutcome = "healthy" | "unhealthy" | "exited" | "timeout";

/**
 * Wait until the container is healthy (with a HEALTHCHECK) or has kept running for the grace
 * period (without one). Exits and restarts count as failure.
 */
export async function waitHealthy(
  docker: Dockerode,
  containerId: string,
  timeoutMs: number,
  abort?: AbortSignal,
): Promise<HealthOutcome> {
  const deadline = Date.now() + timeoutMs;
  let runningSince: number | undefined;
  while (Date.now() < deadline) {
    if (abort?.aborted) return "timeout";
    const info = await docker.getContainer(containerId).inspect();
    const state = info.State;
    if (!state.Running || state.Restarting) return "exited";
    const health = state.Health?.Status;
    if (health === "healthy") return "healthy";
    if (health === "unhealthy") return "unhealthy";
    if (!health) {
      runningSince ??= Date.now();
      if (Date.now() - runningSince >= Math.min(RUNNING_GRACE_MS, timeoutMs)) return "healthy";
    }
    await Bun.sleep(HEALTH_POLL_MS);
  }
  return "timeout";
}

/** True when the container turns unhealthy within the window (it must have a HEALTHCHECK). */
export async function turnsUnhealthy(docker: Dockerode, containerId: string, windowMs: number, abort?: AbortSignal) {
  const deadline = Date.now() + windowMs;
  while (Date.now() < deadline && !abort?.aborted) {
    const info = await docker.getContainer(containerId).inspect();
    if (!info.State.Running) return true;
    if (info.State.Health?.Status === "unhealthy") return true;
    await Bun.sleep(HEALTH_POLL_MS);
  }
  return false;
}
