/**
 * `dso doctor`: what keeps secret values off the disk besides tmpfs. Core dumps (a crash of the
 * agent or a provider would write its heap, values included, to disk): the running agent reports
 * RLIMIT_CORE and PR_SET_DUMPABLE in its status, cross-checked here against /proc/<pid>/limits.
 * Memory locking (mlock keeps buffers of values out of swap): RLIMIT_MEMLOCK and CAP_IPC_LOCK of
 * the agent, or of this process when no agent runs, which then also locks a buffer for real.
 */
import { readFile } from "node:fs/promises";
import { hardenProcess, lockMemory, memlockLimit, unlockMemory } from "../os/libc.ts";
import type { AgentProcessReport, CheckResult } from "./types.ts";

const CAP_IPC_LOCK_BIT = 14n;
/** One secret may be 1 MiB (the file provider's cap): less lockable memory than that is a warning. */
export const MEMLOCK_WANTED_BYTES = 1024n * 1024n;
const TRIAL_LOCK_BYTES = 64 * 1024;

/** "Max core file size" or "Max locked memory" of a /proc/<pid>/limits text: soft and hard, undefined = unlimited. */
export function limitOf(limits: string, name: "Max core file size" | "Max locked memory"): { soft?: bigint; hard?: bigint } | undefined {
  const line = limits.split("\n").find((l) => l.startsWith(name));
  const fields = line?.slice(name.length).trim().split(/\s+/);
  if (!fields || fields.length < 2) return undefined;
  const value = (field: string) => (field === "unlimited" ? undefined : BigInt(field));
  try {
    return { soft: value(fields[0]!), hard: value(fields[1]!) };
  } catch {
    return undefined;
  }
}

/** CAP_IPC_LOCK in the effective set of a /proc/<pid>/status text: mlock is then not limited. */
export function hasIpcLock(status: string): boolean {
  const hex = /CapEff:\s*([0-9a-f]+)/.exec(status)?.[1];
  return hex !== undefined && (BigInt(`0x${hex}`) & (1n << CAP_IPC_LOCK_BIT)) !== 0n;
}

const procText = (pid: number | "self", file: string) => readFile(`/proc/${pid}/${file}`, "utf8").catch(() => undefined);

export async function checkHardening(agent: AgentProcessReport | undefined): Promise<CheckResult> {
  const check = "core dumps";
  if (!agent) {
    // No agent to ask: whether this binary can do it here (this doctor process refuses core dumps too).
    const self = hardenProcess();
    return self.dumpable || self.coreDumps
      ? { check, status: "warn", detail: "no agent running, and this binary could not turn core dumps off here (bun:ffi to libc failed): a crash would write secret values to disk" }
      : { check, status: "ok", detail: "no agent running; this binary turns core dumps off here (RLIMIT_CORE 0, PR_SET_DUMPABLE 0)" };
  }
  const who = `the agent${agent.pid ? ` (pid ${agent.pid})` : ""}`;
  if (!agent.hardening) return { check, status: "warn", detail: `${who} does not report whether it refuses core dumps (an older dso?)` };
  const problems: string[] = [];
  if (agent.hardening.coreDumps) problems.push("RLIMIT_CORE is not 0");
  if (agent.hardening.dumpable) problems.push("it is dumpable (PR_SET_DUMPABLE)");
  // The agent's word, checked against the kernel's where we can read it.
  const limits = agent.pid ? await procText(agent.pid, "limits") : undefined;
  const core = limits ? limitOf(limits, "Max core file size") : undefined;
  if (core && (core.soft !== 0n || core.hard !== 0n) && !agent.hardening.coreDumps) problems.push(`/proc/${agent.pid}/limits says core files up to ${core.soft ?? "unlimited"} bytes`);
  let providersSeen = 0;
  for (const providerPid of agent.providerPids) {
    const text = await procText(providerPid, "limits");
    const limit = text ? limitOf(text, "Max core file size") : undefined;
    if (!limit) continue;
    providersSeen++;
    if (limit.soft !== 0n || limit.hard !== 0n) problems.push(`its provider process ${providerPid} may write core files`);
  }
  if (problems.length) return { check, status: "warn", detail: `${who} can be core-dumped: ${problems.join("; ")}; a crash would write secret values to disk` };
  const seen = core ? ", checked in /proc" : "";
  const providers = providersSeen ? `; so do its ${providersSeen} provider process${providersSeen === 1 ? "" : "es"} (RLIMIT_CORE 0 in /proc)` : "";
  return { check, status: "ok", detail: `${who} refuses core dumps (RLIMIT_CORE 0${seen}) and is not dumpable (PR_SET_DUMPABLE 0)${providers}` };
}

export async function checkMemoryLocking(agent: AgentProcessReport | undefined): Promise<CheckResult> {
  const check = "memory locking";
  const pid = agent?.pid;
  const [limits, status] = pid ? await Promise.all([procText(pid, "limits"), procText(pid, "status")]) : [undefined, undefined];
  const agentView = limits !== undefined && status !== undefined;
  const who = agentView ? `the agent (pid ${pid})` : "this process (no agent to look at)";
  const capable = hasIpcLock(agentView ? status : ((await procText("self", "status")) ?? ""));
  const limit = agentView ? limitOf(limits, "Max locked memory") : memlockLimit();
  // Without an agent to look at, lock a buffer for real: the platform may refuse whatever the limit says.
  if (!agentView) {
    const trial = new Uint8Array(TRIAL_LOCK_BYTES);
    const locked = lockMemory(trial);
    if (locked) unlockMemory(trial);
    else return { check, status: "warn", detail: `mlock of ${TRIAL_LOCK_BYTES / 1024} KiB is refused here (RLIMIT_MEMLOCK ${describeLimit(limit?.soft)}): buffers holding values can be swapped out` };
  }
  if (capable) return { check, status: "ok", detail: `${who} has CAP_IPC_LOCK: buffers holding values can be locked in RAM (mlock) without limit` };
  if (limit && limit.soft === undefined) return { check, status: "ok", detail: `${who} may lock any amount of memory (RLIMIT_MEMLOCK unlimited)` };
  if (!limit) return { check, status: "warn", detail: `cannot read RLIMIT_MEMLOCK of ${who}` };
  if (limit.soft! >= MEMLOCK_WANTED_BYTES) return { check, status: "ok", detail: `${who} may lock ${describeLimit(limit.soft)} of buffers holding values in RAM (RLIMIT_MEMLOCK)` };
  return {
    check,
    status: "warn",
    detail: `${who} may lock only ${describeLimit(limit.soft)} (RLIMIT_MEMLOCK) and has no CAP_IPC_LOCK: buffers of values beyond that can be swapped out; raise it (systemd LimitMEMLOCK=, docker run --ulimit memlock=)`,
  };
}

function describeLimit(bytes: bigint | undefined): string {
  if (bytes === undefined) return "unlimited";
  return bytes >= 1024n * 1024n ? `${bytes / (1024n * 1024n)} MiB` : `${bytes / 1024n} KiB`;
}
