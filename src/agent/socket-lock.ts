/**
 * One agent per socket. An exclusive flock(2) on `<socket>.lock`, held for the agent's life and
 * released by the kernel when it dies (even by SIGKILL), decides who may serve the socket: a second
 * agent refuses to start and names the holder's PID; a stale socket left by a killed agent is then
 * safe to replace. flock comes from libc through bun:ffi (src/os/libc.ts).
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { DsoError } from "../errors.ts";
import { tryLockExclusive } from "../os/libc.ts";

/** How long a refused agent waits for the holder to write its PID (it does so right after flock). */
export const HOLDER_PID_WAIT_MS = 1_000;
const HOLDER_PID_POLL_MS = 20;

export interface SocketLock {
  path: string;
  release(): void;
}

export function lockPathFor(socketPath: string): string {
  return `${socketPath}.lock`;
}

/** Takes the socket's lock or throws a one-line error naming the agent that holds it. */
export function acquireSocketLock(socketPath: string): SocketLock {
  const path = lockPathFor(socketPath);
  const fd = openSync(path, "a+", 0o600);
  if (!tryLockExclusive(fd)) {
    closeSync(fd);
    const holder = readHolder(path);
    throw new DsoError("USAGE", `another dso agent${/^\d+$/.test(holder) ? ` (pid ${holder})` : ""} is serving ${socketPath}; stop it first or use another --socket`);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  return {
    path,
    release: () => closeSync(fd),
  };
}

/**
 * The holder's PID from the lock file; re-read briefly while it is empty or names a process that
 * is gone (the lock just taken, the new PID not written yet over a killed agent's).
 */
function readHolder(path: string): string {
  const deadline = Date.now() + HOLDER_PID_WAIT_MS;
  for (;;) {
    const holder = readFileSync(path, "utf8").trim();
    if ((/^\d+$/.test(holder) && isAlive(Number(holder))) || Date.now() >= deadline) return holder;
    Bun.sleepSync(HOLDER_PID_POLL_MS);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
