import { access, constants, mkdtemp, readFile, realpath, rmdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { ConfigError, DEFAULT_GROUP_SOCKET_PATH, DEFAULT_SOCKET_PATH, DEFAULT_VOLUMES_ROOT, findConfigPath, formatIssue, loadConfig } from "../config/index.ts";
import { volumeRootMountCommand } from "../delivery/plugin/volume-driver.ts";
import { mountsReachDockerd } from "../delivery/plugin/volume-mounts.ts";
import { isRamBacked, nearestExisting, privateDirProblem } from "../delivery/tmpfs.ts";
import { connectDocker } from "../docker/client.ts";
import { callRoute, reachableSocket } from "../api/client.ts";
import type { StatusReply } from "../api/contract.ts";
import { describeError, DsoError } from "../errors.ts";
import { MNT_DETACH, mountTmpfs, unmount } from "../os/libc.ts";
import { checkChangeEvents } from "./change-events.ts";
import { checkDeliveryModes } from "./delivery-modes.ts";
import { checkFileProviderPermissions } from "./file-permissions.ts";
import { checkHardening, checkMemoryLocking } from "./hardening.ts";
import { checkLegacyDrivers } from "./legacy-drivers.ts";
import { checkPollQuota } from "./poll-quota.ts";
import { checkLeaseTokens } from "./lease-token.ts";
import { runtimePathProblems } from "./runtime-paths.ts";
import type { AgentProcessReport, CheckResult, DoctorContext } from "./types.ts";

export type { AgentProcessReport, CheckResult, CheckStatus, DoctorContext } from "./types.ts";

const DOCKER_CHECK_TIMEOUT_MS = 5_000;
const AGENT_CHECK_TIMEOUT_MS = 3_000;
const CAP_SYS_ADMIN_BIT = 21n;

export async function checkConfig(ctx: DoctorContext): Promise<CheckResult> {
  try {
    const path = findConfigPath({ flag: ctx.configFlag, env: ctx.env });
    const { config, warnings } = await loadConfig(path, ctx.env);
    ctx.config = config;
    const where = path ?? "built-in default";
    const paths = runtimePathProblems(config);
    if (paths.length) return { check: "config", status: "fail", detail: `${where}: the agent would refuse it here: ${paths.join("; ")}` };
    const note = warnings.length ? `; ${warnings.length} warning(s): ${warnings.map(formatIssue).join("; ")}` : "";
    return { check: "config", status: warnings.length ? "warn" : "ok", detail: `${where} is valid${note}` };
  } catch (error) {
    if (error instanceof ConfigError) {
      return { check: "config", status: "fail", detail: error.issues.map(formatIssue).join("; ") };
    }
    return { check: "config", status: "fail", detail: describeError(error) };
  }
}

export async function checkDocker(ctx: DoctorContext): Promise<CheckResult[]> {
  try {
    const conn = await connectDocker({ env: ctx.env, signal: AbortSignal.timeout(DOCKER_CHECK_TIMEOUT_MS) });
    ctx.docker = conn;
    return [
      { check: "docker", status: "ok", detail: `reachable at ${conn.host}` },
      {
        check: "docker engine",
        status: "ok",
        detail: `engine ${conn.engineVersion}, API ${conn.serverApiVersion} (min ${conn.minApiVersion})`,
      },
      { check: "docker API", status: "ok", detail: `using API ${conn.negotiatedApiVersion}` },
    ];
  } catch (error) {
    return [{ check: "docker", status: "fail", detail: describeError(error) }];
  }
}

export async function checkSocketDirectory(ctx: DoctorContext): Promise<CheckResult> {
  const socket = ctx.config?.agent.socket ?? DEFAULT_SOCKET_PATH;
  const dir = dirname(socket);
  const existing = await nearestExisting(dir);
  try {
    await access(existing, constants.W_OK);
  } catch {
    return { check: "socket directory", status: "fail", detail: `${existing} is not writable (socket ${socket})` };
  }
  const mode = (await stat(existing)).mode;
  if (mode & 0o002) {
    return { check: "socket directory", status: "fail", detail: `${existing} is world-writable; pick another socket path` };
  }
  const created = existing === dir ? "" : " (will be created)";
  return { check: "socket directory", status: "ok", detail: `${dir} writable${created}` };
}

/** CAP_SYS_ADMIN in the effective set (/proc/self/status CapEff, bit 21). */
async function hasSysAdmin(): Promise<boolean> {
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  const hex = /CapEff:\s*([0-9a-f]+)/.exec(status)?.[1];
  return hex !== undefined && (BigInt(`0x${hex}`) & (1n << CAP_SYS_ADMIN_BIT)) !== 0n;
}

/** Mounts and unmounts a tiny tmpfs with mount(2), as the agent would; the error says why not. */
export async function tryMountTmpfs(): Promise<{ ok: true; how?: string } | { ok: false; why: string }> {
  if (process.getuid?.() !== 0) return { ok: false, why: "not running as root" };
  const dir = await mkdtemp(join(tmpdir(), "dso-doctor-")).catch(() => undefined);
  if (!dir) {
    // A read-only root (docker run --read-only) leaves nowhere to try: judge by the capability.
    return (await hasSysAdmin())
      ? { ok: true, how: `CAP_SYS_ADMIN is granted (not tried: ${tmpdir()} is not writable)` }
      : { ok: false, why: "the agent lacks CAP_SYS_ADMIN" };
  }
  try {
    mountTmpfs(dir, "size=64k,mode=0700");
    const ok = await isRamBacked(dir);
    unmount(dir, MNT_DETACH);
    return ok ? { ok: true } : { ok: false, why: "statfs does not see the tmpfs it mounted" };
  } catch (error) {
    return { ok: false, why: describeError(error) };
  } finally {
    await rmdir(dir).catch(() => {});
  }
}

export async function checkPluginTmpfs(ctx: DoctorContext): Promise<CheckResult> {
  const root = ctx.config?.agent.volumesRoot ?? DEFAULT_VOLUMES_ROOT;
  const existing = await nearestExisting(root);
  if (existing === root && (await isRamBacked(root))) {
    const problem = await privateDirProblem(root).catch((error: unknown) => describeError(error));
    // The agent closes a root of its own that others cannot write to (chmod 0700); anything else it refuses.
    const owner = await stat(root).catch(() => undefined);
    const refused = !owner || owner.uid !== (process.getuid?.() ?? 0) || (owner.mode & 0o022) !== 0;
    if (problem && refused) {
      return { check: "plugin tmpfs", status: "fail", detail: `${root} is a tmpfs, but ${problem}: others could plant or read DSO files; unmount it and mount one of root's own: ${volumeRootMountCommand(root)}` };
    }
    const bounds = (await mountsReachDockerd(root))
      ? "each volume gets its own tmpfs"
      : "volumes share it (the agent's mounts would not reach dockerd here, or it is not root): one container can fill them all";
    return { check: "plugin tmpfs", status: bounds.startsWith("each") ? "ok" : "warn", detail: `${root} is a tmpfs${problem ? " (the agent will close it to others: mode 0700)" : ""}; ${bounds}` };
  }
  const probe = await tryMountTmpfs();
  if (probe.ok) {
    const how = probe.how ? ` (${probe.how})` : "";
    return { check: "plugin tmpfs", status: "ok", detail: `${root} is not a tmpfs yet; the agent will mount one there${how}` };
  }
  return {
    check: "plugin tmpfs",
    status: "fail",
    detail: `${root} is not a tmpfs and a tmpfs cannot be mounted here (${probe.why}); run as root with CAP_SYS_ADMIN, or mount one: ${volumeRootMountCommand(root)}`,
  };
}

/** /proc/swaps lists active swap areas after its header line. */
export function activeSwaps(procSwaps: string): string[] {
  return procSwaps
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name.length > 0);
}

/** What a swap area is made of: RAM (zram), a dm-crypt device, or anything else (a disk, a file, LVM). */
export type SwapKind = "ram" | "encrypted" | "plain";

/** By the kernel's own word: /sys/block/<dev>/dm/uuid starts with CRYPT- for dm-crypt (LVM's is LVM-). */
async function swapKindOf(area: string): Promise<SwapKind> {
  const device = basename(await realpath(area).catch(() => area));
  if (device.startsWith("zram")) return "ram";
  const uuid = await readFile(`/sys/block/${device}/dm/uuid`, "utf8").catch(() => "");
  return uuid.startsWith("CRYPT-") ? "encrypted" : "plain";
}

export async function checkSwap(): Promise<CheckResult> {
  const text = await readFile("/proc/swaps", "utf8").catch(() => "");
  const kinds = new Map(await Promise.all(activeSwaps(text).map(async (area) => [area, await swapKindOf(area)] as const)));
  return swapCheck(text, (area) => kinds.get(area) ?? "plain");
}

/** The swap check over a /proc/swaps text. */
export function swapCheck(procSwaps: string, kindOf: (area: string) => SwapKind): CheckResult {
  const swaps = activeSwaps(procSwaps);
  if (swaps.length === 0) return { check: "swap", status: "ok", detail: "no swap: tmpfs pages stay in RAM" };
  const plain = swaps.filter((s) => kindOf(s) === "plain");
  if (plain.length === 0) return { check: "swap", status: "ok", detail: `swap in RAM (zram) or on dm-crypt only: ${swaps.join(", ")}` };
  return {
    check: "swap",
    status: "warn",
    // mlock covers the agent's own buffers, never the tmpfs pages of delivered files.
    detail: `swap is on and not encrypted (${plain.join(", ")}): tmpfs secrets can be paged to disk (memory locking does not cover delivered files); encrypt swap or turn it off`,
  };
}

/** Environment injection is for Go DSO compatibility; its values show in `docker inspect`. */
export function checkEnvInjection(ctx: DoctorContext): CheckResult {
  const envSecrets = (ctx.config?.secrets ?? []).filter((s) => s.inject.type === "env").map((s) => s.name);
  if (envSecrets.length === 0) return { check: "env injection", status: "ok", detail: "no secret is injected as environment variables" };
  return {
    check: "env injection",
    status: "warn",
    detail: `${envSecrets.join(", ")} use inject.type env: values are visible to anyone who can run docker inspect, Docker stores them in the container's config on disk, and rotation re-creates the container; prefer files`,
  };
}

/** As the CLI finds it (cli/agent-client.ts): flag, $DSO_SOCKET, else the first reachable of agent.socket and agent.group_socket. */
function agentSocketOf(ctx: DoctorContext): string {
  return ctx.socketFlag || ctx.env.DSO_SOCKET || reachableSocket([ctx.config?.agent.socket ?? DEFAULT_SOCKET_PATH, ctx.config?.agent.groupSocket ?? DEFAULT_GROUP_SOCKET_PATH]);
}

/**
 * Whether an agent answers on its socket. No socket is a warning (doctor is also run before the
 * first start); a socket nobody answers on is a failure: a crashed or hung agent leaves one,
 * and dockerd then fails every container that uses a DSO volume.
 */
export async function checkAgent(ctx: DoctorContext): Promise<CheckResult> {
  const socket = agentSocketOf(ctx);
  let isSocket = false;
  try {
    isSocket = (await stat(socket)).isSocket();
  } catch {
    return { check: "agent", status: "warn", detail: `no agent is running: ${socket} does not exist (start it with: dso agent)` };
  }
  if (!isSocket) return { check: "agent", status: "fail", detail: `${socket} exists but is not a socket` };
  try {
    const status = await callRoute(socket, "status", undefined, { timeoutMs: AGENT_CHECK_TIMEOUT_MS });
    ctx.agent = agentProcessReport(status);
    return { check: "agent", status: "ok", detail: `agent ${status.agent.version} answers on ${socket}, pid ${status.agent.pid}` };
  } catch (error) {
    const code = error instanceof DsoError ? error.code : undefined;
    // It answered, in a shape this dso does not read: another version of DSO.
    if (code === "INTERNAL") return { check: "agent", status: "warn", detail: `an agent answers on ${socket}, but ${describeError(error)}` };
    const timedOut = ((error as Error).cause as Error | undefined)?.name === "TimeoutError";
    const why = timedOut ? `did not answer within ${AGENT_CHECK_TIMEOUT_MS / 1000} s` : "nothing answers on it (a stale socket from an agent that stopped?)";
    return { check: "agent", status: "fail", detail: `${socket}: ${why}` };
  }
}

function agentProcessReport(status: StatusReply): AgentProcessReport {
  const { pid, hardening } = status.agent;
  return {
    pid,
    ...(hardening ? { hardening } : {}),
    providerPids: status.providers.map((p) => p.pid).filter((p): p is number => p !== undefined),
  };
}

export async function runChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  const config = await checkConfig(ctx);
  const [docker, agent, socket, tmpfs, swap, files, legacy, tokens] = await Promise.all([
    checkDocker(ctx),
    checkAgent(ctx),
    checkSocketDirectory(ctx),
    checkPluginTmpfs(ctx),
    checkSwap(),
    checkFileProviderPermissions(ctx.config),
    checkLegacyDrivers(),
    checkLeaseTokens(ctx.config, ctx.env),
  ]);
  const modes = await checkDeliveryModes(ctx, { tmpfs, socket });
  const events = await checkChangeEvents(ctx.config, ctx.env);
  // Last: without an agent, the hardening check turns core dumps off for this process too.
  const locking = await checkMemoryLocking(ctx.agent);
  const cores = await checkHardening(ctx.agent);
  return [config, checkEnvInjection(ctx), ...checkPollQuota(ctx.config), ...docker, agent, ...legacy, socket, tmpfs, swap, locking, cores, ...files, ...tokens, ...modes, ...events];
}
