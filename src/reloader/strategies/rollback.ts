/**
 * Why a replacement did not take over, in words a user can act on, and the error a rolled-back
 * rotation ends with. Docker's own words only (start errors, State.Error, exit codes): never the
 * container's logs or healthcheck output, which may print a secret.
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import type { HealthOutcome } from "./health.ts";

/**
 * What the old container runs on after a failed rotation; `signalled-back`: the same container
 * (strategy `signal`) has its previous files back and was signalled again.
 */
export type RestoredState = "old-files" | "new-files" | "signalled-back";

/**
 * A rotation that did not take: the replacement is gone and the old container runs. `reason` is
 * what `dso ls` shows after `rollback:`.
 */
export class RollbackError extends DsoError {
  constructor(
    readonly reason: string,
    readonly restored: RestoredState,
    options?: { cause?: unknown },
  ) {
    super("DELIVERY_FAILED", `rollback: ${reason}; ${restoredWords(restored)}`, options);
  }
}

function restoredWords(restored: RestoredState): string {
  if (restored === "signalled-back") return "the container runs on its previous files";
  return restored === "old-files"
    ? "the old container keeps running on its previous files"
    : "the old container runs again (its tmpfs was emptied by the stop, so it has the new files: DSO keeps no copy of old values)";
}

const PORT_TAKEN = /port is already allocated|address already in use|bind: /i;

/** A failed `start` of a replacement, named (a taken host port is said so). */
export function describeStartError(error: unknown): string {
  const message = (error instanceof Error ? error.message : String(error)).split("\n")[0]!.replace(/^\(HTTP code \d+\) [a-z ]+- /, "");
  return PORT_TAKEN.test(message) ? `could not start: host port taken (${message.trim()})` : `could not start: ${message.trim()}`;
}

/** Why a started replacement was not healthy, from its state. */
export async function describeUnhealthy(docker: Dockerode, containerId: string, outcome: HealthOutcome, timeoutMs: number): Promise<string> {
  const info = await docker.getContainer(containerId).inspect().catch(() => undefined);
  const state = info?.State;
  if (outcome === "timeout") return `not healthy within ${Math.round(timeoutMs / 1000)}s (health: ${state?.Health?.Status ?? "none"})`;
  if (outcome === "unhealthy") {
    const last = state?.Health?.Log?.at(-1);
    return `unhealthy: its HEALTHCHECK failed ${state?.Health?.FailingStreak ?? "?"} time(s)${last ? ` (last exit code ${last.ExitCode})` : ""}`;
  }
  if (!state) return "exited and is gone";
  const parts = [`exited with code ${state.ExitCode}`];
  if (state.OOMKilled) parts.push("killed for lack of memory");
  if (state.Error) parts.push(PORT_TAKEN.test(state.Error) ? `host port taken: ${state.Error}` : state.Error);
  if (info?.HostConfig.NetworkMode === "host") parts.push("it shares the host's network: does it bind a port the old container holds?");
  return parts.join("; ");
}
