/**
 * volume mode: a target backed by a tmpfs local volume (mounted on the host while the container
 * runs). Never used for `--tmpfs` targets: there the archive API lands on disk.
 *
 * Direct (the plan names a way in, chosen by mode-picker.ts): the atomic writer (atomic-dir.ts),
 * as in plugin mode, so rotation is atomic and costs no Docker call. Two ways in:
 * - `hostPath`: the volume's host mountpoint, when it is visible here (agent on the host). Each
 *   delivery opens it and checks, through the open fd, that it is still the root of a tmpfs mount
 *   (ramfs too): once the container stops, that path is a directory of the data root on disk.
 * - `pid`: the container's view of the volume through /proc/<pid>/root, as procfs mode writes
 *   (agent in a container with --pid host, or the managed plugin, where the data root is not
 *   mounted).
 *
 * Fallback, when neither is available (or under userns-remap): one putArchive of an in-memory
 * tar. The Docker archive API can only add, and replaces an existing path with RemoveAll + create. So:
 * - two version slots alternate, `..dso_slot_a` and `..dso_slot_b`; the tar first replaces the
 *   idle slot with an empty file (wiping an old version), then recreates it with the new files;
 * - `..data` and the name links are replaced by remove + create: for a few microseconds a path
 *   can be missing (ENOENT). A reader still never sees a mix of two versions through `..data`;
 * - finally the previous version (a slot, or a directory the atomic writer made) is replaced by an
 *   empty file, so its values leave the volume;
 * - a name dropped from the set stays as a dangling link (the API cannot delete);
 * - no previous version can be kept for a `signal` rollback (`notKept` says so); the direct ways
 *   keep and restore it as the atomic writer does.
 */
import type Dockerode from "dockerode";
import { posix } from "node:path";
import { DsoError } from "../../errors.ts";
import { keptOrWhy, pruneAtomicDir, readAtomicMarker, restoreAtomicVersion, writeAtomicDir } from "../atomic-dir.ts";
import { fdPath } from "../container-root.ts";
import { assertValidFileSet } from "../file-names.ts";
import { DATA_LINK, isMarker, isVersionName, VERSION_MARKER } from "../layout.ts";
import { emptyFileEntry, nameLinkEntries, packTar, symlinkEntry, versionEntries } from "../tar.ts";
import { openRamMountRoot } from "../tmpfs.ts";
import type { DeliverModeOptions, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";
import { procfsMode } from "./procfs.ts";

export const VOLUME_SLOTS = ["..dso_slot_a", "..dso_slot_b"] as const;
/** A putArchive of a few MB into a local tmpfs volume takes milliseconds. */
export const PUT_ARCHIVE_TIMEOUT_MS = 30_000;
/** Why the archive fallback cannot roll files back. */
const ARCHIVE_KEEPS_NOTHING = "volume mode through the Docker archive API (no direct way to the volume) keeps no previous version";

interface PathStat {
  linkTarget?: string;
}

export const volumeMode: DeliveryModeImpl = {
  async deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
    if (plan.hostPath) return deliverAtMountpoint(plan, plan.hostPath, files, signal, marker, opts);
    if (plan.pid) return { ...(await procfsMode.deliver(docker, plan, files, signal, marker, opts)), mode: "volume" };
    const result = await deliverByArchive(docker, plan, files, signal, marker);
    return opts?.keepPrevious ? { ...result, notKept: ARCHIVE_KEEPS_NOTHING } : result;
  },
  async restore(docker: Dockerode, plan: DeliveryPlan, version: string, signal?: AbortSignal): Promise<void> {
    if (plan.pid && !plan.hostPath) return procfsMode.restore!(docker, plan, version, signal);
    if (!plan.hostPath) throw new DsoError("DELIVERY_FAILED", ARCHIVE_KEEPS_NOTHING);
    signal?.throwIfAborted();
    const handle = await openMountpoint(plan, plan.hostPath);
    try {
      await restoreAtomicVersion(fdPath(handle), version);
    } finally {
      await handle.close();
    }
  },
  async prune(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<void> {
    if (plan.pid && !plan.hostPath) return procfsMode.prune!(docker, plan, signal);
    // Through the archive API nothing is kept: the previous slot is wiped by each delivery.
    if (!plan.hostPath) return;
    const handle = await openRamMountRoot(plan.hostPath);
    if (!handle) return;
    try {
      await pruneAtomicDir(fdPath(handle));
    } finally {
      await handle.close();
    }
  },
  /**
   * Direct: read back as the atomic writer wrote it, no Docker call. Archive: one HEAD of the
   * marker link (Docker resolves `..data` inside the container's root).
   */
  async readMarker(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<string | undefined> {
    if (plan.hostPath) return readMarkerAtMountpoint(plan.hostPath);
    if (plan.pid) return procfsMode.readMarker(docker, plan, signal);
    const timeout = AbortSignal.timeout(PUT_ARCHIVE_TIMEOUT_MS);
    const abortSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    // Docker reports a link's target fully resolved in the container; the marker is its last part.
    const target = await statLink(docker.getContainer(plan.containerId), posix.join(plan.targetPath, DATA_LINK, VERSION_MARKER), abortSignal);
    const marker = target === undefined ? undefined : posix.basename(target);
    return isMarker(marker) ? marker : undefined;
  },
};

/** The host mountpoint, opened and checked to be a tmpfs mount root; refused otherwise, never written below. */
async function openMountpoint(plan: DeliveryPlan, hostPath: string) {
  const handle = await openRamMountRoot(hostPath);
  if (!handle) {
    throw new DsoError("DELIVERY_FAILED", `the tmpfs volume at ${plan.targetPath} is no longer mounted on this host (did the container stop?); deliver again`);
  }
  return handle;
}

async function deliverAtMountpoint(plan: DeliveryPlan, hostPath: string, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
  const started = performance.now();
  const names = assertValidFileSet(files);
  signal?.throwIfAborted();
  const handle = await openMountpoint(plan, hostPath);
  try {
    const { bytes, kept } = await writeAtomicDir(fdPath(handle), files, marker, opts);
    return { mode: "volume", targetPath: plan.targetPath, files: names, bytes, durationMs: performance.now() - started, ...keptOrWhy(opts, kept) };
  } finally {
    await handle.close();
  }
}

async function readMarkerAtMountpoint(hostPath: string): Promise<string | undefined> {
  const handle = await openRamMountRoot(hostPath);
  if (!handle) return undefined;
  try {
    return await readAtomicMarker(fdPath(handle)).catch(() => undefined);
  } finally {
    await handle.close();
  }
}

async function deliverByArchive(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string): Promise<DeliveryResult> {
  const started = performance.now();
  const names = assertValidFileSet(files);
  const timeout = AbortSignal.timeout(PUT_ARCHIVE_TIMEOUT_MS);
  const abortSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const container = docker.getContainer(plan.containerId);
  const current = posix.basename((await statLink(container, posix.join(plan.targetPath, DATA_LINK), abortSignal)) ?? "");
  const next = current === VOLUME_SLOTS[0] ? VOLUME_SLOTS[1] : VOLUME_SLOTS[0];
  // A slot, or a version directory the atomic writer made (the plan changed between deliveries).
  const previous = current !== next && isVersionName(current) ? current : undefined;
  const mtime = new Date();
  const tar = await packTar([
    emptyFileEntry(next, mtime),
    ...versionEntries(next, files, mtime, marker),
    symlinkEntry(DATA_LINK, next, mtime),
    ...nameLinkEntries(files, mtime),
    ...(previous ? [emptyFileEntry(previous, mtime)] : []),
  ]);
  try {
    await container.putArchive(tar, { path: plan.targetPath, abortSignal });
  } catch (error) {
    throw new DsoError("DELIVERY_FAILED", `putArchive into ${plan.targetPath} failed: ${dockerReason(error)}`, { cause: error });
  } finally {
    tar.fill(0);
  }
  const bytes = files.reduce((sum, file) => sum + file.content.byteLength, 0);
  return { mode: "volume", targetPath: plan.targetPath, files: names, bytes, durationMs: performance.now() - started };
}

/** Where a symlink in the container points, read with HEAD /containers/{id}/archive (a stat, no content). */
async function statLink(container: Dockerode.Container, path: string, abortSignal: AbortSignal): Promise<string | undefined> {
  let reply: { headers?: Record<string, string | string[] | undefined>; resume?: () => void };
  try {
    reply = (await container.infoArchive({ path, abortSignal })) as typeof reply;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw new DsoError("DELIVERY_FAILED", `cannot stat ${posix.dirname(path)} in the container: ${dockerReason(error)}`, { cause: error });
  }
  reply.resume?.();
  const header = reply.headers?.["x-docker-container-path-stat"];
  if (typeof header !== "string") return undefined;
  const stat = JSON.parse(Buffer.from(header, "base64").toString("utf8")) as PathStat;
  return stat.linkTarget || undefined;
}

function dockerReason(error: unknown): string {
  const json = (error as { json?: { message?: string } }).json;
  const message = json?.message ?? (error as Error).message ?? String(error);
  return message.split("\n")[0] ?? "unknown error";
}
