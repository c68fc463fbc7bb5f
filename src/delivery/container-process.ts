/**
 * Which process a plan's PID names, read from /proc instead of asked of Docker. A plan records the
 * container's main PID and that process's start time (clock ticks since boot, field 22 of
 * /proc/<pid>/stat); a PID reused by another process has another start time, so comparing the two
 * after the container's root was opened proves the root belonged to the planned process. A wave
 * over 1,000 containers then costs no inspect per container.
 */
import { readFile } from "node:fs/promises";

/**
 * The start time of `pid` under `procRoot`, or undefined when no such process is visible or it
 * has exited (a zombie keeps its stat line, but its root is gone).
 */
export async function processStartTime(procRoot: string, pid: number): Promise<string | undefined> {
  const stat = await readFile(`${procRoot}/${pid}/stat`, "latin1").catch(() => undefined);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces or ')': fields follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  const start = fields[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/**
 * The start time of `pid` when it is a process of container `containerId`: its cgroup path names
 * the container's id (cgroupfs `/docker/<id>`, systemd `docker-<id>.scope`) and its start time is
 * the same before and after that read, so the process seen in the cgroup is the one timed.
 * Undefined when that cannot be shown (another cgroup layout): the caller asks Docker instead.
 */
export async function containerProcessStart(procRoot: string, pid: number, containerId: string): Promise<string | undefined> {
  if (pid <= 0 || !/^[0-9a-f]{64}$/.test(containerId)) return undefined;
  const before = await processStartTime(procRoot, pid);
  if (before === undefined) return undefined;
  const cgroup = await readFile(`${procRoot}/${pid}/cgroup`, "latin1").catch(() => "");
  if (!namesContainer(cgroup, containerId)) return undefined;
  return (await processStartTime(procRoot, pid)) === before ? before : undefined;
}

/** A line of /proc/<pid>/cgroup whose path ends in the container's own cgroup directory. */
function namesContainer(cgroup: string, containerId: string): boolean {
  return cgroup.split("\n").some((line) => {
    const path = line.slice(line.indexOf(":", line.indexOf(":") + 1) + 1);
    const last = path.slice(path.lastIndexOf("/") + 1);
    return last === containerId || last === `docker-${containerId}.scope`;
  });
}
