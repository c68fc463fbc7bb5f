/**
 * Which mount holds a path, and how that mount propagates, read from /proc/self/mountinfo.
 * Doctor needs it in a container: a tmpfs the agent mounts under a volume root that is not a
 * shared (rshared) bind of the host is invisible to dockerd, and runc then fails on
 * `stat /run/dso/volumes/<volume>: no such file or directory`. The parser lives with the other
 * RAM-backing checks (delivery/tmpfs.ts), which read a container's mount table the same way.
 */
import { readFileSync } from "node:fs";
import { mountOf, parseMountinfo, type MountEntry } from "../delivery/tmpfs.ts";

export { mountOf, parseMountinfo, type MountEntry };

export function readMountinfo(): MountEntry[] {
  try {
    return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
  } catch {
    return [];
  }
}
