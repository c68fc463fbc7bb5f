/**
 * A real Docker daemon for tests. Uses DSO_TEST_DOCKER_HOST when it answers; otherwise starts a
 * private dockerd (Debian's docker.io) with its own data, exec root and socket under a fresh
 * /tmp/dso-test-XXXX, so tests never touch a host daemon and leave nothing behind.
 * One daemon per test process: `bun test` runs every file in one process.
 */
import type Dockerode from "dockerode";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { connectDocker } from "../../src/docker/client.ts";

export interface TestDocker {
  /** DOCKER_HOST form, e.g. unix:///tmp/dso-test-abc/docker.sock */
  host: string;
  socketPath: string;
  /** Client pinned to the negotiated API version. */
  docker: Dockerode;
  /** The daemon's --data-root: security tests byte-scan it for planted secrets. */
  dataRoot: string;
  /** True when this process started the daemon (and stopDocker() will stop it). */
  privateDaemon: boolean;
}

const DOCKERD = "/usr/sbin/dockerd";
/** A cold dockerd with vfs starts in about a second here; allow for slow CI machines. */
const DAEMON_START_TIMEOUT_MS = 30_000;
const PING_INTERVAL_MS = 100;
const PING_TIMEOUT_MS = 1_000;
/** dockerd's own wait for containers to stop on shutdown (its default is 15 s). */
const DAEMON_SHUTDOWN_TIMEOUT_S = 2;
/** How long stopDocker waits after SIGTERM before SIGKILL. */
const DAEMON_STOP_TIMEOUT_MS = 15_000;
const LOG_TAIL_LINES = 30;
const TEMP_PARENT = "/tmp";
const TEMP_NAME_PREFIX = "dso-test-";
/** A temp dir younger than this may belong to a daemon still starting elsewhere: leave it. */
const STALE_DIR_MIN_AGE_MS = 10 * 60_000;

interface PrivateDaemon {
  proc: Subprocess;
  rootDir: string;
  logPath: string;
  execRoot: string;
}

let ready: Promise<TestDocker> | undefined;
let daemon: PrivateDaemon | undefined;

/** The test daemon, started on first call. */
export function ensureDocker(): Promise<TestDocker> {
  ready ??= startOrAttach().catch((error) => {
    ready = undefined;
    throw error;
  });
  return ready;
}

/** `{ DOCKER_HOST }` for subprocesses (the dso binary, docker CLI) that must use the test daemon. */
export async function dockerHostEnv(): Promise<{ DOCKER_HOST: string }> {
  return { DOCKER_HOST: (await ensureDocker()).host };
}

/** True once this process has started its own dockerd (the preload stops it after all tests). */
export function privateDaemonStarted(): boolean {
  return daemon !== undefined;
}

async function startOrAttach(): Promise<TestDocker> {
  const external = process.env.DSO_TEST_DOCKER_HOST;
  if (external) {
    const attached = await attach(external).catch(() => undefined);
    if (attached) return attached;
  }
  return startPrivateDaemon();
}

async function attach(host: string): Promise<TestDocker> {
  if (!host.startsWith("unix://")) throw new Error("DSO_TEST_DOCKER_HOST must be a unix:// socket");
  const conn = await connectDocker({ env: { DOCKER_HOST: host } });
  const info = (await conn.docker.info()) as { DockerRootDir: string };
  return {
    host,
    socketPath: host.slice("unix://".length),
    docker: conn.docker,
    dataRoot: info.DockerRootDir,
    privateDaemon: false,
  };
}

async function startPrivateDaemon(): Promise<TestDocker> {
  if (process.getuid?.() !== 0) throw new Error("the private test dockerd needs root");
  if (!existsSync(DOCKERD)) throw new Error(`${DOCKERD} not found: apt-get install docker.io busybox-static`);
  // Short path: a unix socket path must stay under ~108 bytes, and containerd nests sockets in exec-root.
  removeStaleTempDirs();
  const rootDir = makeDaemonDir();
  const dataRoot = join(rootDir, "data");
  const socketPath = join(rootDir, "docker.sock");
  const logPath = join(rootDir, "dockerd.log");
  const execRoot = join(rootDir, "exec");

  const proc = spawnDockerd(rootDir);
  daemon = { proc, rootDir, logPath, execRoot };
  process.once("exit", terminateOnExit);

  try {
    await waitForPing(socketPath, proc, logPath);
    const host = `unix://${socketPath}`;
    const conn = await connectDocker({ env: { DOCKER_HOST: host } });
    return { host, socketPath, docker: conn.docker, dataRoot, privateDaemon: true };
  } catch (error) {
    await stopDocker();
    throw error;
  }
}

interface DaemonPlacement {
  /** Run dockerd inside this network namespace (`ip netns` name), in the host's other namespaces. */
  netns?: string;
  /** Flags added to the fixed ones, e.g. --default-address-pool. */
  args?: string[];
}

/** A fresh /tmp/dso-test-XXXX with data and exec roots and an empty daemon.json. */
function makeDaemonDir(): string {
  const rootDir = mkdtempSync(join(TEMP_PARENT, TEMP_NAME_PREFIX));
  mkdirSync(join(rootDir, "data"));
  mkdirSync(join(rootDir, "exec"));
  // An empty config file so a host /etc/docker/daemon.json cannot change or conflict with our flags.
  writeFileSync(join(rootDir, "daemon.json"), "{}\n");
  return rootDir;
}

export interface ExtraDocker extends TestDocker {
  /** The daemon's log so far. */
  logTail(): string;
  /** SIGTERM (SIGKILL after a while), then unmount and remove its temp dir. */
  stop(): Promise<void>;
}

/**
 * One more private dockerd beside the shared test daemon, e.g. a node of a multi-host Swarm in
 * its own network namespace. Same flags and layout; the caller stops it.
 */
export async function startExtraDocker(placement: DaemonPlacement = {}): Promise<ExtraDocker> {
  if (process.getuid?.() !== 0) throw new Error("a private test dockerd needs root");
  const rootDir = makeDaemonDir();
  const socketPath = join(rootDir, "docker.sock");
  const logPath = join(rootDir, "dockerd.log");
  const extra: PrivateDaemon = { proc: spawnDockerd(rootDir, placement), rootDir, logPath, execRoot: join(rootDir, "exec") };
  const kill = () => {
    if (extra.proc.exitCode === null) extra.proc.kill("SIGTERM");
  };
  process.once("exit", kill);
  const stop = async () => {
    process.removeListener("exit", kill);
    await stopDaemon(extra);
  };
  try {
    await waitForPing(socketPath, extra.proc, logPath);
    const host = `unix://${socketPath}`;
    const conn = await connectDocker({ env: { DOCKER_HOST: host } });
    return { host, socketPath, docker: conn.docker, dataRoot: join(rootDir, "data"), privateDaemon: true, logTail: () => logTail(logPath), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** dockerd with the fixed test flags and every path under rootDir (so a restart reuses them). */
function spawnDockerd(rootDir: string, placement: DaemonPlacement = {}): Subprocess {
  const dataRoot = join(rootDir, "data");
  const execRoot = join(rootDir, "exec");
  const socketPath = join(rootDir, "docker.sock");
  const configPath = join(rootDir, "daemon.json");
  const logFd = openSync(join(rootDir, "dockerd.log"), "a");
  // nsenter --net only: `ip netns exec` would also remount /sys, hiding the cgroup mounts dockerd needs.
  const prefix = placement.netns ? ["nsenter", `--net=/run/netns/${placement.netns}`, "--"] : [];
  const proc = Bun.spawn(
    [
      ...prefix,
      DOCKERD,
      `--config-file=${configPath}`,
      `--data-root=${dataRoot}`,
      `--exec-root=${execRoot}`,
      `--pidfile=${join(rootDir, "dockerd.pid")}`,
      `--host=unix://${socketPath}`,
      "--iptables=false",
      "--ip6tables=false",
      "--bridge=none",
      "--storage-driver=vfs",
      `--shutdown-timeout=${DAEMON_SHUTDOWN_TIMEOUT_S}`,
      ...(placement.args ?? []),
    ],
    { stdin: "ignore", stdout: logFd, stderr: logFd, env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" } },
  );
  closeSync(logFd);
  return proc;
}

/**
 * Restart the private dockerd in place (same socket, data and exec roots), as `systemctl restart
 * docker` would: running containers stop, those with a restart policy come back. For tests of
 * what survives a daemon restart.
 */
export async function restartDocker(options: { whileStopped?: () => Promise<void>; startTimeoutMs?: number } = {}): Promise<{ spawnedAt: number }> {
  const current = daemon;
  if (!current) throw new Error("restartDocker needs the private test daemon");
  current.proc.kill("SIGTERM");
  await current.proc.exited;
  // E.g. start a volume driver first, as systemd's Before=docker.service does at boot.
  await options.whileStopped?.();
  // performance.now() when the new dockerd was started: tests time recovery from here.
  const spawnedAt = performance.now();
  const proc = spawnDockerd(current.rootDir);
  daemon = { ...current, proc };
  await waitForPing(join(current.rootDir, "docker.sock"), proc, current.logPath, options.startTimeoutMs);
  return { spawnedAt };
}

/**
 * Replaces the private daemon's daemon.json (e.g. { "live-restore": true }); it takes effect at the
 * next restartDocker(). Tests that change it put `{}` back before they end.
 */
export function setDaemonConfig(config: Record<string, unknown>): void {
  if (!daemon) throw new Error("setDaemonConfig needs the private test daemon");
  writeFileSync(join(daemon.rootDir, "daemon.json"), `${JSON.stringify(config)}\n`);
}

/** The private daemon's log so far (for failure messages of tests that restart it). */
export function dockerdLogTail(): string {
  return daemon ? logTail(daemon.logPath) : "(no private dockerd)";
}

async function waitForPing(socketPath: string, proc: Subprocess, logPath: string, timeoutMs = DAEMON_START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`dockerd exited (${proc.exitCode ?? proc.signalCode}) before answering:\n${logTail(logPath)}`);
    }
    if (existsSync(socketPath) && (await pings(socketPath))) return;
    await Bun.sleep(PING_INTERVAL_MS);
  }
  throw new Error(`dockerd did not answer /_ping within ${timeoutMs / 1000} s:\n${logTail(logPath)}`);
}

async function pings(socketPath: string): Promise<boolean> {
  try {
    const res = await fetch("http://localhost/_ping", { unix: socketPath, signal: AbortSignal.timeout(PING_TIMEOUT_MS) });
    return res.ok && (await res.text()) === "OK";
  } catch {
    return false;
  }
}

function logTail(logPath: string): string {
  try {
    return readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
  } catch {
    return "(no dockerd log)";
  }
}

/** If the test process dies without running afterAll, do not leave a dockerd behind. */
function terminateOnExit(): void {
  if (daemon && daemon.proc.exitCode === null) daemon.proc.kill("SIGTERM");
}

/** Stops the private dockerd (if this process started one) and removes its temp dir. */
export async function stopDocker(): Promise<void> {
  const current = daemon;
  if (!current) return;
  daemon = undefined;
  ready = undefined;
  process.removeListener("exit", terminateOnExit);
  await stopDaemon(current);
}

async function stopDaemon(current: PrivateDaemon): Promise<void> {
  current.proc.kill("SIGTERM");
  const exited = await Promise.race([current.proc.exited.then(() => true), Bun.sleep(DAEMON_STOP_TIMEOUT_MS).then(() => false)]);
  if (!exited) {
    current.proc.kill("SIGKILL");
    await current.proc.exited;
    // dockerd stops its managed containerd on a clean shutdown only.
    killByPidfile(join(current.execRoot, "containerd", "containerd.pid"));
  }
  unmountUnder(current.rootDir);
  try {
    rmSync(current.rootDir, { recursive: true, force: true });
  } catch (error) {
    console.warn(`could not remove ${current.rootDir}: ${(error as Error).message}`);
  }
}

/** A test process killed hard leaves its temp dir behind (its dockerd got SIGTERM); tidy those. */
function removeStaleTempDirs(): void {
  for (const name of readdirSync(TEMP_PARENT)) {
    if (!name.startsWith(TEMP_NAME_PREFIX)) continue;
    const dir = join(TEMP_PARENT, name);
    try {
      if (Date.now() - statSync(dir).mtimeMs < STALE_DIR_MIN_AGE_MS) continue;
      if (pidfileAlive(join(dir, "dockerd.pid"))) continue;
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Someone else's, or vanished meanwhile: not ours to fuss over.
    }
  }
}

function pidfileAlive(pidfile: string): boolean {
  try {
    const pid = Number(readFileSync(pidfile, "utf8").trim());
    if (!(pid > 0)) return false;
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM means the process exists but is not ours.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killByPidfile(pidfile: string): void {
  try {
    const pid = Number(readFileSync(pidfile, "utf8").trim());
    if (pid > 0) process.kill(pid, "SIGKILL");
  } catch {
    // Already gone, or never written.
  }
}

/** vfs layers and container mounts can outlive a killed daemon; unmount deepest first, lazily. */
function unmountUnder(dir: string): void {
  const prefix = `${dir}/`;
  const mountPoints = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((point): point is string => point !== undefined)
    .map(unescapeMountPath)
    .filter((point) => point.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
  for (const point of mountPoints) Bun.spawnSync(["umount", "-l", point], { stdout: "ignore", stderr: "ignore" });
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}
