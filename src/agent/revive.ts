/**
 * Containers left dead because this volume driver was missing when dockerd started them. When the
 * agent runs as a plain container, dockerd restores containers with a restart policy before (or
 * while) it starts the agent's container; a DSO-volume container then fails with "plugin dso not
 * found" and dockerd never retries a failed start. So at every connection to Docker the agent
 * looks once for such containers and starts them: not running, a restart policy that asks for it
 * (always, unless-stopped, on-failure with retries left), and State.Error naming this driver as
 * not found or not reachable. dockerd serves its API only after its restore pass, so a connection
 * sees the outcome of that pass.
 */
import type Dockerode from "dockerode";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import type { ContainerRef } from "../observe/observer.ts";

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * What dockerd says when the volume driver `name` is absent, not yet listening, or a disabled
 * managed plugin: its lookup ("error looking up volume plugin dso", 'plugin "dso" not found',
 * 'plugin "dso:latest" found but disabled') or a dial of its socket that failed. Nothing looser:
 * a network, an entrypoint or a path that merely contains the name is not our driver.
 */
function driverMissing(name: string): RegExp {
  const n = escape(name);
  return new RegExp(
    `error looking up volume plugin ${n}(?![\\w.-])|plugin "?${n}(:[\\w.-]+)?"? (not found|found but disabled)|/${n}\\.sock: connect: (connection refused|no such file or directory)`,
    "i",
  );
}

export interface ReviveDeps {
  docker: Dockerode;
  /** This agent's volume driver names (a managed plugin's also appears as `<name>:<tag>`). */
  drivers: readonly string[];
  log: Pick<FieldLogger, "info" | "warn">;
  /** Told of each start; never throws. */
  onRevived?: (p: { container: ContainerRef; seconds: number; error?: unknown }) => void;
}

export interface RestartState {
  policy: string;
  maxRetries: number;
  restartCount: number;
}

/** Whether dockerd itself would have started the container again, had the start not failed on us. */
export function policyWantsRunning(s: RestartState): boolean {
  if (s.policy === "always" || s.policy === "unless-stopped") return true;
  return s.policy === "on-failure" && (s.maxRetries === 0 || s.restartCount < s.maxRetries);
}

export function isOurDriver(driver: string, drivers: readonly string[]): boolean {
  return drivers.some((name) => driver === name || driver.startsWith(`${name}:`));
}

/** State.Error of a failed start that names one of our drivers as missing or unreachable. */
export function failedOnOurDriver(error: string, drivers: readonly string[]): boolean {
  if (!error) return false;
  return drivers.some((name) => driverMissing(name).test(error));
}

/** Starts every stranded DSO-volume container once; returns the names started. */
export async function reviveStrandedContainers(deps: ReviveDeps): Promise<string[]> {
  const revived: string[] = [];
  try {
    const stopped = await deps.docker.listContainers({ all: true, filters: { status: ["created", "exited"] } });
    const candidates = stopped.filter((c) => (c.Mounts ?? []).some((m) => m.Type === "volume" && isOurDriver(m.Driver ?? "", deps.drivers)));
    for (const entry of candidates) {
      const name = await reviveOne(deps, entry.Id);
      if (name) revived.push(name);
    }
  } catch (error) {
    deps.log.warn("could not look for containers left dead by a missing DSO volume driver", { error: describeError(error) });
  }
  return revived;
}

async function reviveOne(deps: ReviveDeps, id: string): Promise<string | undefined> {
  const container = deps.docker.getContainer(id);
  const info = await container.inspect().catch(() => undefined);
  if (!info || info.State.Running || info.State.Restarting) return undefined;
  const policy: { Name?: string; MaximumRetryCount?: number } = info.HostConfig.RestartPolicy ?? {};
  const restart = { policy: policy.Name ?? "", maxRetries: policy.MaximumRetryCount ?? 0, restartCount: info.RestartCount ?? 0 };
  if (!policyWantsRunning(restart) || !failedOnOurDriver(info.State.Error ?? "", deps.drivers)) return undefined;
  const name = info.Name.replace(/^\//, "");
  const ref = { id: info.Id, name };
  const started = performance.now();
  try {
    await container.start();
    deps.log.info("started a container that dockerd left dead because the DSO volume driver was missing", { container: name, policy: restart.policy });
    deps.onRevived?.({ container: ref, seconds: (performance.now() - started) / 1000 });
    return name;
  } catch (error) {
    deps.log.warn("could not start a container left dead by a missing DSO volume driver", { container: name, error: describeError(error) });
    deps.onRevived?.({ container: ref, seconds: (performance.now() - started) / 1000, error });
    return undefined;
  }
}
