/**
 * Shared helpers for the delivery tests on the real daemon: containers labelled as ours, exec with
 * separated output, `docker diff` under a path, and the byte scan that looks for a planted secret
 * on disk (everything except mounted tmpfs).
 */
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PassThrough } from "node:stream";
import type { SecretFile } from "../../src/delivery/types.ts";
import { ensureDocker, type TestDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

export const OWNER_LABEL = { "dso-test.owner": "test/delivery" };

export async function testDocker(): Promise<TestDocker> {
  const daemon = await ensureDocker();
  await ensureTestImages(daemon.docker);
  return daemon;
}

/** A value nobody else would write anywhere: if the scan finds it, it came from us. */
export function plantedValue(label = "secret"): string {
  return `dso-planted-${label}-${crypto.randomUUID()}`;
}

export function secretFile(name: string, value: string, extra: Partial<SecretFile> = {}): SecretFile {
  return { name, content: new TextEncoder().encode(value), mode: 0o400, uid: 65534, gid: 65534, ...extra };
}

export interface ContainerSpec {
  image?: string;
  cmd?: string[];
  tmpfs?: Record<string, string>;
  binds?: string[];
  mounts?: Dockerode.MountSettings[];
  start?: boolean;
}

export async function startContainer(docker: Dockerode, spec: ContainerSpec = {}): Promise<Dockerode.Container> {
  const container = await docker.createContainer({
    Image: spec.image ?? BUSYBOX_IMAGE,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    Labels: OWNER_LABEL,
    HostConfig: {
      NetworkMode: "none",
      ...(spec.tmpfs ? { Tmpfs: spec.tmpfs } : {}),
      ...(spec.binds ? { Binds: spec.binds } : {}),
      ...(spec.mounts ? { Mounts: spec.mounts } : {}),
    },
  });
  if (spec.start !== false) await container.start();
  return container;
}

export async function removeContainers(containers: Iterable<Dockerode.Container>): Promise<void> {
  await Promise.all([...containers].map((c) => c.remove({ force: true, v: true }).catch(() => undefined)));
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function execIn(docker: Dockerode, containerId: string, cmd: string[]): Promise<ExecResult> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on("data", (c: Buffer) => out.push(c));
  const stderr = new PassThrough().on("data", (c: Buffer) => err.push(c));
  docker.modem.demuxStream(stream, stdout, stderr);
  await new Promise((resolve) => stream.on("end", resolve));
  const { ExitCode } = await exec.inspect();
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), exitCode: ExitCode ?? -1 };
}

/** `stat` inside the container: "<octal mode> <uid> <gid> <size>" of the file the name resolves to. */
export async function statIn(docker: Dockerode, containerId: string, path: string): Promise<string> {
  const result = await execIn(docker, containerId, ["stat", "-L", "-c", "%a %u %g %s", path]);
  return result.stdout.trim();
}

/**
 * Paths `docker diff` reports below `dir`. The mount point itself shows up as added when the image
 * lacks it (dockerd creates it at start); that is not our doing, so only what is inside counts.
 */
export async function diffUnder(container: Dockerode.Container, dir: string): Promise<string[]> {
  const changes = ((await container.changes()) ?? []) as Array<{ Path: string }>;
  return changes.map((c) => c.Path).filter((path) => path.startsWith(`${dir}/`));
}

/** Mount points of tmpfs and ramfs mounts in this process's mount namespace, from /proc/self/mountinfo. */
export function tmpfsMountPoints(): Set<string> {
  const points = new Set<string>();
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n") as string[]) {
    const [left, right] = line.split(" - ");
    const fsType = right?.split(" ")[0];
    const point = left?.split(" ")[4];
    if (point && (fsType === "tmpfs" || fsType === "ramfs")) points.add(point.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
  }
  return points;
}

/**
 * Every regular file under `roots` (not crossing into mounted tmpfs, not following links) whose
 * bytes contain `value`. Returns their paths: an empty list is the pass condition.
 */
export async function findOnDisk(roots: readonly string[], value: string): Promise<string[]> {
  return (await findAllOnDisk(roots, [value])).get(value) ?? [];
}

/** findOnDisk for many values in one walk: value → the files that contain it. */
export async function findAllOnDisk(roots: readonly string[], values: readonly string[]): Promise<Map<string, string[]>> {
  const needles = values.map((value) => [value, Buffer.from(value)] as const);
  const skip = tmpfsMountPoints();
  const hits = new Map<string, string[]>(values.map((v) => [v, []]));
  const walk = async (path: string): Promise<void> => {
    if (skip.has(path)) return;
    const stats = await lstat(path).catch(() => undefined);
    if (!stats) return;
    if (stats.isDirectory()) {
      const entries = await readdir(path).catch(() => [] as string[]);
      for (const entry of entries) await walk(join(path, entry));
      return;
    }
    if (!stats.isFile() || stats.size === 0) return;
    const bytes = await readFile(path).catch(() => undefined);
    if (!bytes) return;
    for (const [value, needle] of needles) if (bytes.includes(needle)) hits.get(value)!.push(path);
  };
  for (const root of roots) await walk(root);
  return hits;
}

/** The daemon's whole private directory: data-root, exec-root, its log and config. */
export function daemonDirs(daemon: TestDocker): string[] {
  return daemon.privateDaemon ? [dirname(daemon.dataRoot)] : [daemon.dataRoot];
}


/**
 * Reads the pair (a, b) in a loop inside the container for `seconds`, two ways: a snapshot through
 * `..data` (cd once, read both) must never mix versions; a plain read of `<dir>/a` must always give
 * a whole value. Values look like "a:<n>" and "b:<n>". Paths and durations are positional args.
 */
const READER_SCRIPT = `d=$1; end=$(( $(date +%s) + $2 )); reads=0; mixed=0; gone=0; broken=0
while [ "$(date +%s)" -lt "$end" ]; do
  reads=$((reads + 1))
  if pair=$(cd "$d/..data" 2>/dev/null && cat a b 2>/dev/null); then
    set -- $pair
    if [ "\${1#a:}" != "\${2#b:}" ]; then mixed=$((mixed + 1)); echo "MIXED $1 $2"; fi
  else
    gone=$((gone + 1))
  fi
  v=$(cat "$d/a" 2>/dev/null) || v=missing
  case "$v" in a:*) ;; *) broken=$((broken + 1)) ;; esac
done
echo "reads=$reads mixed=$mixed gone=$gone broken=$broken"
`;

export interface ReaderReport {
  reads: number;
  mixed: number;
  gone: number;
  broken: number;
}

export function pairFiles(n: number, extra: Partial<SecretFile> = {}): SecretFile[] {
  // "a:<n>" and "b:<n>" padded so a torn write would show.
  return [secretFile("a", `a:${n}${" ".repeat(4000)}`, extra), secretFile("b", `b:${n}${" ".repeat(4000)}`, extra)];
}

/** Starts the reader, calls `rotate(n)` until it finishes, returns what it saw and the rotation count. */
export async function readWhileRotating(
  docker: Dockerode,
  containerId: string,
  dir: string,
  seconds: number,
  rotate: (n: number) => Promise<unknown>,
): Promise<ReaderReport & { rotations: number; output: string }> {
  const reader = execIn(docker, containerId, ["sh", "-c", READER_SCRIPT, "reader", dir, String(seconds)]);
  let finished = false;
  void reader.finally(() => {
    finished = true;
  });
  let rotations = 0;
  while (!finished) {
    rotations += 1;
    await rotate(rotations + 1);
  }
  const { stdout } = await reader;
  const last = stdout.trim().split("\n").at(-1) ?? "";
  const field = (key: string) => Number(new RegExp(`${key}=(\\d+)`).exec(last)?.[1] ?? Number.NaN);
  return { reads: field("reads"), mixed: field("mixed"), gone: field("gone"), broken: field("broken"), rotations, output: stdout };
}

/** The reader above for a fixed number of reads instead of a time: for tests that count, never time. */
const COUNTED_READER_SCRIPT = READER_SCRIPT.replace('end=$(( $(date +%s) + $2 ));', "left=$2;").replace('while [ "$(date +%s)" -lt "$end" ]; do', 'while [ "$left" -gt 0 ]; do\n  left=$((left - 1))');

/** Starts a reader that reads the pair `reads` times, rotates until it is done (at least once), reports both. */
export async function readCountWhileRotating(
  docker: Dockerode,
  containerId: string,
  dir: string,
  reads: number,
  rotate: (n: number) => Promise<unknown>,
): Promise<ReaderReport & { rotations: number; output: string }> {
  const reader = execIn(docker, containerId, ["sh", "-c", COUNTED_READER_SCRIPT, "reader", dir, String(reads)]);
  let finished = false;
  void reader.finally(() => {
    finished = true;
  });
  let rotations = 0;
  do {
    rotations += 1;
    await rotate(rotations + 1);
  } while (!finished);
  const { stdout } = await reader;
  const last = stdout.trim().split("\n").at(-1) ?? "";
  const field = (key: string) => Number(new RegExp(`${key}=(\\d+)`).exec(last)?.[1] ?? Number.NaN);
  return { reads: field("reads"), mixed: field("mixed"), gone: field("gone"), broken: field("broken"), rotations, output: stdout };
}
