/**
 * What the agent needs of the file system at start, checked where `dso config validate` and
 * `dso doctor` run, so a file they call valid is not refused by the agent a moment later (issue 22):
 * the audit file's directory exists (the agent creates the file, not the directory), and the
 * audit file, the volumes root and the socket are not on a read-only file system (a read-only
 * container image without the documented writable mounts restart-loops on EROFS).
 */
import { accessSync, constants, statSync } from "node:fs";
import { dirname } from "node:path";
import type { DsoConfig } from "../config/types.ts";

/** The path itself, or its nearest ancestor that exists. */
function nearestExisting(path: string): string {
  let p = path;
  while (p !== dirname(p)) {
    try {
      statSync(p);
      return p;
    } catch {
      p = dirname(p);
    }
  }
  return p;
}

function readOnly(path: string): boolean {
  try {
    accessSync(nearestExisting(path), constants.W_OK);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EROFS";
  }
}

/** One line per problem, `<key>: <what is wrong>`. */
export function runtimePathProblems(config: Pick<DsoConfig, "agent">): string[] {
  const problems: string[] = [];
  const { audit, volumesRoot, socket } = config.agent;
  if (audit.enabled && audit.output !== "stderr") {
    const dir = dirname(audit.output);
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      // missing: reported below
    }
    if (!isDir) problems.push(`agent.audit.output: directory ${dir} does not exist (the agent creates the file, not its directory)`);
    else if (readOnly(audit.output)) problems.push(`agent.audit.output: ${audit.output} is on a read-only file system`);
  }
  if (readOnly(volumesRoot)) problems.push(`agent.volumes_root: ${volumesRoot} is on a read-only file system (mount a writable /run/dso)`);
  if (readOnly(dirname(socket))) problems.push(`agent.socket: ${dirname(socket)} is on a read-only file system`);
  return problems;
}
