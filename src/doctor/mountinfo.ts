/**
 * Which mount holds a path, and how that mount propagates, read from /proc/self/mountinfo.
 * Doctor needs it in a container: a tmpfs the agent mounts under a volume root that is not a
 * shared (rshared) bind of the host is invisible to dockerd, and runc then fails on
 * `stat /run/dso/volumes/<volume>: no such file or directory`.
 */
import { readFileSync } from "node:fs";

export interface MountEntry {
  mountPoint: string;
  /** "shared" sends new mounts to its peers (the host); "slave" only receives; "private" neither. */
  propagation: "shared" | "slave" | "private";
  fsType: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescape(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const separator = fields.indexOf("-");
    if (fields.length < 7 || separator < 6) continue;
    const optional = fields.slice(6, separator);
    const propagation = optional.some((f) => f.startsWith("shared:")) ? "shared" : optional.some((f) => f.startsWith("master:")) ? "slave" : "private";
    entries.push({ mountPoint: unescape(fields[4]!), propagation, fsType: fields[separator + 1] ?? "" });
  }
  return entries;
}

/** The mount a path lives on: the last-mounted entry with the longest mount point above it. */
export function mountOf(path: string, entries: MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const entry of entries) {
    const point = entry.mountPoint;
    const above = point === "/" || path === point || path.startsWith(`${point}/`);
    if (above && (!best || point.length >= best.mountPoint.length)) best = entry;
  }
  return best;
}

export function readMountinfo(): MountEntry[] {
  try {
    return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
  } catch {
    return [];
  }
}
