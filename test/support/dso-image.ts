/**
 * The agent's image and plugin, built here the way deploy/ describes them but without a registry:
 * deploy/rootfs.ts assembles binary + ldd libraries, `docker import` turns it into the stand-in
 * for deploy/Dockerfile's image (its ENTRYPOINT and CMD read from the Dockerfile, so the two
 * cannot drift apart), and the plugin directory feeds `docker plugin create`.
 * Also: a host directory made a shared mount, which `-v DIR:DIR:rshared` needs.
 */
import type Dockerode from "dockerode";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { assembleRootfs } from "../../deploy/rootfs.ts";
import { dsoBinary, REPO_ROOT } from "./dso-binary.ts";

export const DOCKERFILE = join(REPO_ROOT, "deploy/Dockerfile");

/** The exec-form ENTRYPOINT and CMD of the Dockerfile's final stage, as `docker import --change` lines. */
export function dockerfileChanges(): string[] {
  const stages = readFileSync(DOCKERFILE, "utf8").split(/^FROM /m);
  const last = stages[stages.length - 1] ?? "";
  const changes = last
    .split("\n")
    .filter((line) => /^(ENTRYPOINT|CMD|USER) /.test(line))
    .map((line) => line.trim());
  if (!changes.some((c) => c.startsWith("ENTRYPOINT [")) || !changes.some((c) => c.startsWith("CMD ["))) {
    throw new Error(`${DOCKERFILE}: final stage needs exec-form ENTRYPOINT and CMD`);
  }
  return changes;
}

/** Imports the agent image under `reference`; returns its size in bytes as the daemon reports it. */
export async function importAgentImage(docker: Dockerode, reference: string, workDir: string): Promise<number> {
  const rootfs = join(workDir, "image-rootfs");
  await assembleRootfs(await dsoBinary(), rootfs);
  const tar = Bun.spawnSync(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], { stdout: "pipe", stderr: "pipe", maxBuffer: 512 * 1024 * 1024 });
  if (!tar.success) throw new Error(`tar of ${rootfs} failed: ${tar.stderr.toString()}`);
  const [repo, tag] = reference.split(":") as [string, string];
  const progress = await docker.importImage(tar.stdout as unknown as NodeJS.ReadableStream, { repo, tag, changes: dockerfileChanges() });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(progress, (err: Error | null, out: Array<{ error?: string }>) => {
      const failed = err ?? (out.find((e) => e.error) ? new Error(out.find((e) => e.error)!.error) : null);
      return failed ? reject(failed) : resolve();
    }),
  );
  return (await docker.getImage(reference).inspect()).Size;
}

/** `mount --bind DIR DIR; mount --make-rshared DIR`: what a systemd host's /run already is. */
export async function makeSharedMount(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const argv of [["mount", "--bind", dir, dir], ["mount", "--make-rshared", dir]]) {
    const run = Bun.spawnSync(argv, { stderr: "pipe" });
    if (!run.success) throw new Error(`${argv.join(" ")}: ${run.stderr.toString().trim()}`);
  }
}

/** Lazily unmounts everything at or below `dir`, deepest first. */
export function unmountTree(dir: string): void {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of points) Bun.spawnSync(["umount", "-l", point], { stdout: "ignore", stderr: "ignore" });
}

/** Resident memory of one process, in bytes (0 when it is gone). */
export function rssBytes(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Resident memory of a process and all its descendants (the agent and its providers), in bytes. */
export function treeRssBytes(pid: number): number {
  let total = 0;
  const pending = [pid];
  while (pending.length) {
    const current = pending.pop()!;
    total += rssBytes(current);
    try {
      for (const task of readdirSync(`/proc/${current}/task`)) {
        const children = readFileSync(`/proc/${current}/task/${task}/children`, "utf8").trim();
        if (children) pending.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return total;
}
