/**
 * DSO as a Docker (legacy, socket-based) volume driver. dockerd calls VolumeDriver.Mount before
 * the container starts; we resolve the volume's secrets then and write them with the atomic writer
 * into <root>/<volume> on tmpfs, so the entrypoint finds them, or we answer Err and the container
 * does not start (fail closed). The agent serves `handle` on its unix socket.
 *
 * Each volume has a record in <root>/.options/<name>.json (tmpfs, 0600, never a value): its
 * driver options, its open mounts (by dockerd's mount id, which is not the container id), and
 * per container id the version marker of the files that container was last told about (written
 * by the reconciler: at its first look at the container, and after its strategy ran). An agent
 * restart therefore forgets nothing dockerd relies on, and the reconciler can tell which
 * containers sharing a volume still have to be told about new files. The volume's files carry
 * their own marker (layout.ts).
 *
 * Who can reach the files: the root is 0700 and must be ours (a root others can write to or walk
 * into is refused, see prepareRoot), so on the host only root gets to <root>/<volume>; each volume
 * is its own small tmpfs (volume-mounts.ts), 0755 so the container's app user can walk into it,
 * and the files keep the uid/gid/mode the volume asks for. Volume names are no secret (they show
 * in every process's /proc/<pid>/mountinfo); the directory modes are the guard.
 */
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { DEFAULT_VOLUMES_ROOT } from "../../config/defaults.ts";
import { describeError, DsoError } from "../../errors.ts";
import { log } from "../../log/logger.ts";
import { KeyedQueue } from "../../util/keyed-queue.ts";
import { readCapped } from "../../util/json-body.ts";
import { printable } from "../../util/printable.ts";
import { clearAtomicDir, readAtomicMarker, writeAtomicDir } from "../atomic-dir.ts";
import { isRamBacked, nearestExisting, securePrivateDir } from "../tmpfs.ts";
import type { DeliveryResult, SecretFile } from "../types.ts";
import { secretNamesOf, validateDriverOptions } from "./driver-options.ts";
import { mountsReachDockerd, volumeMounts } from "./volume-mounts.ts";


/** The media type dockerd sends and expects for plugin calls. */
const PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json";
/** Docker volume names: what `docker volume create` accepts, which also keeps them path-safe. */
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const OPTIONS_DIR = ".options";
/** The volume root and the records: root's own (finding 4 of issue 18: 0711 let host users reach a file by its name). */
const ROOT_MODE = 0o700;
/** dockerd's plugin calls are a name, an id and a few options; an 8 MB body was read whole before (found by test/fuzz). */
export const MAX_PLUGIN_BODY_BYTES = 64 * 1024;

/** The files of a volume and the version marker that describes them. */
export interface VolumeFiles {
  files: SecretFile[];
  marker?: string;
  /** Ends the window of the values behind `files` (wipes them); the driver calls it once written. */
  release?(): void;
}

export type ResolveFiles = (volumeName: string, driverOpts: Readonly<Record<string, string>>, callerId?: string) => Promise<VolumeFiles>;

export interface VolumeDriverOptions {
  /** tmpfs base directory; verified with statfs, refused otherwise. */
  root?: string;
  /**
   * Where the volume records live (options, mounts, markers: never a value). Default
   * `<root>/.options` on the tmpfs; a managed plugin points it at its own rootfs, because dockerd
   * unmounts the plugin's propagated mount (the tmpfs) when it stops.
   */
  recordsDir?: string;
  resolveFiles: ResolveFiles;
  /**
   * The marker the volume's files should have now, from known fingerprints (no fetch), or
   * undefined when unknown. A Mount of an already mounted volume fetches only when it differs.
   */
  wantedMarker?: (volumeName: string, driverOpts: Readonly<Record<string, string>>) => string | undefined;
  /** A Mount wrote new files into a volume other containers already use: tell them (strategies). */
  onFilesChanged?: (volumeName: string) => void;
  /** Shared with the reconciler, so one volume's Mount, rotation and reconcile never interleave. */
  queue?: KeyedQueue;
  /**
   * One tmpfs per volume (volume-mounts.ts). Default: when a mount made here is what dockerd sees
   * (mountsReachDockerd); false keeps every volume on the root's tmpfs.
   */
  tmpfsPerVolume?: boolean;
}

/** What the driver knows of one volume: enough to reconcile the containers that use it. */
export interface VolumeObservation {
  mounted: boolean;
  opts: Readonly<Record<string, string>>;
  /** Marker of the files in the volume now, read from the volume directory. */
  filesMarker?: string;
  /** Per container id: the marker of the files it was last told about. */
  seen: ReadonlyMap<string, string>;
}

export interface VolumeDriver {
  readonly root: string;
  /** Answers a plugin route, or undefined when the request is not one (the agent serves the rest). */
  handle(req: Request): Promise<Response | undefined>;
  /** Rewrites a mounted volume's files atomically; undefined when no container uses it. */
  rotate(volumeName: string, content: VolumeFiles): Promise<DeliveryResult | undefined>;
  /** Names of volumes mounted by at least one container. */
  mountedVolumes(): string[];
  /** The host directory of a mounted volume (for the mode picker), undefined when not mounted. */
  mountpointOf(volumeName: string): string | undefined;
  observe(volumeName: string): Promise<VolumeObservation | undefined>;
  /** The driver options of a volume it has a record of. */
  optionsOf(volumeName: string): Readonly<Record<string, string>> | undefined;
  /** Records that a container has been told about the files at `marker` (its strategy ran). */
  markSeen(volumeName: string, containerId: string, marker: string): Promise<void>;
  /**
   * Corrects the records from Docker's list of running containers taken at `listedAt` (ms):
   * `running` maps each DSO volume in use to the ids of the containers using it. A volume no
   * running container uses lost its Unmount while no agent answered: its mounts are dropped and
   * its files removed; `seen` entries of containers that no longer use a volume go.
   */
  syncUsers(running: ReadonlyMap<string, ReadonlySet<string>>, listedAt: number): Promise<void>;
  /** Records volumes dockerd knows but this driver has no record of (records lost). */
  adopt(volumes: ReadonlyArray<{ name: string; opts: Record<string, string> }>): Promise<string[]>;
}

interface VolumeState {
  opts: Record<string, string>;
  /**
   * Open mounts per caller id. A count, not a set: dockerd reuses a container's id when it mounts
   * the volume again for an archive call (docker cp, putArchive) and unmounts after, so a set
   * would wipe the files of a running container after its first `docker cp`.
   */
  users: Map<string, number>;
  /** When each mount was first recorded (ms), so a Docker list older than that cannot drop it. */
  since: Map<string, number>;
  /** Container id → marker of the files it was last told about. */
  seen: Map<string, string>;
  /** Reconcile passes in a row that found no running container using the volume (memory only). */
  unusedPasses?: number;
}

const UNUSED_PASSES_BEFORE_DROP = 2;

const NameRequest = v.object({ Name: v.pipe(v.string(), v.regex(VOLUME_NAME, "is not a valid volume name")) });
const CreateRequest = v.object({ ...NameRequest.entries, Opts: v.optional(v.nullable(v.record(v.string(), v.string()))) });
const MountRequest = v.object({ ...NameRequest.entries, ID: v.optional(v.string(), "") });
const StoredRecord = v.object({
  opts: v.record(v.string(), v.string()),
  users: v.optional(v.record(v.string(), v.number()), {}),
  since: v.optional(v.record(v.string(), v.number()), {}),
  seen: v.optional(v.record(v.string(), v.string()), {}),
});
/** Records written before users were kept held the options alone. */
const LegacyRecord = v.record(v.string(), v.string());

export async function createVolumeDriver(options: VolumeDriverOptions): Promise<VolumeDriver> {
  const root = options.root ?? DEFAULT_VOLUMES_ROOT;
  await prepareRoot(root);
  const records = options.recordsDir ?? join(root, OPTIONS_DIR);
  await mkdir(records, { recursive: true, mode: ROOT_MODE });
  await securePrivate(records, "volume records directory", `make it root's own: chown 0:0 ${records} && chmod 0700 ${records}`);
  const volumes = await loadRecords(records);
  const mounts = volumeMounts(options.tmpfsPerVolume ?? (await mountsReachDockerd(root)), log);
  const queue = options.queue ?? new KeyedQueue();
  const dirOf = (name: string) => join(root, name);
  const serialized = <T>(name: string, work: () => Promise<T>) => queue.run(`volume:${name}`, work);
  const save = (name: string, state: VolumeState) => saveRecord(records, name, state);

  const routes: Record<string, (body: unknown) => Promise<object>> = {
    "/Plugin.Activate": async () => ({ Implements: ["VolumeDriver"] }),
    "/VolumeDriver.Capabilities": async () => ({ Capabilities: { Scope: "local" } }),
    "/VolumeDriver.Create": async (body) => {
      const req = parse(CreateRequest, body);
      const opts = { ...(req.Opts ?? {}) };
      validateDriverOptions(opts); // refuse a typo, a missing secrets= or a bad uid/gid/mode at create time, not at first start
      return serialized(req.Name, async () => {
        const state = volumes.get(req.Name) ?? newState(opts);
        volumes.set(req.Name, state);
        await save(req.Name, state);
        return { Err: "" };
      });
    },
    "/VolumeDriver.Remove": async (body) => {
      const { Name } = parse(NameRequest, body);
      // dockerd calls Remove only for a volume no container references; mounts in the record are
      // stale (an Unmount lost while no agent answered), so `docker volume rm` always works.
      return serialized(Name, async () => {
        volumes.delete(Name);
        await emptyVolume(Name);
        await rm(join(records, `${Name}.json`), { force: true });
        return { Err: "" };
      });
    },
    "/VolumeDriver.Mount": async (body) => {
      const { Name, ID } = parse(MountRequest, body);
      return serialized(Name, async () => {
        const state = volumes.get(Name);
        if (!state) return { Err: `dso: volume ${Name} is unknown to DSO; remove and recreate it` };
        await fillIfStale(Name, state, ID);
        state.users.set(ID, (state.users.get(ID) ?? 0) + 1);
        if (!state.since.has(ID)) state.since.set(ID, Date.now());
        await save(Name, state);
        return { Mountpoint: dirOf(Name), Err: "" };
      });
    },
    "/VolumeDriver.Unmount": async (body) => {
      const { Name, ID } = parse(MountRequest, body);
      return serialized(Name, async () => {
        const state = volumes.get(Name);
        if (!state) return { Err: "" };
        const left = (state.users.get(ID) ?? 0) - 1;
        if (left > 0) state.users.set(ID, left);
        else dropMount(state, ID);
        if (state.users.size === 0) await emptyVolume(Name);
        await save(Name, state);
        return { Err: "" };
      });
    },
    "/VolumeDriver.Path": async (body) => {
      const { Name } = parse(NameRequest, body);
      const state = volumes.get(Name);
      if (!state) return { Err: `dso: no such volume: ${Name}` };
      return { Mountpoint: state.users.size > 0 ? dirOf(Name) : "", Err: "" };
    },
    "/VolumeDriver.Get": async (body) => {
      const { Name } = parse(NameRequest, body);
      const state = volumes.get(Name);
      if (!state) return { Err: `dso: no such volume: ${Name}` };
      return { Volume: describe(Name, state), Err: "" };
    },
    "/VolumeDriver.List": async () => ({ Volumes: [...volumes].map(([name, state]) => describe(name, state)), Err: "" }),
  };

  function describe(name: string, state: VolumeState) {
    return { Name: name, Mountpoint: state.users.size > 0 ? dirOf(name) : "", Status: { secrets: secretNamesOf(state.opts).join(",") } };
  }

  /**
   * The first Mount always fetches (fail closed on an unavailable secret); a Mount of a volume
   * already in use fetches only when its files are not the wanted version.
   */
  async function fillIfStale(name: string, state: VolumeState, callerId: string): Promise<void> {
    const current = state.users.size > 0 ? await readAtomicMarker(dirOf(name)).catch(() => undefined) : undefined;
    const wanted = options.wantedMarker?.(name, state.opts);
    if (state.users.size > 0 && current !== undefined && current === wanted) return;
    const { files, marker, release } = await options.resolveFiles(name, state.opts, callerId || undefined);
    try {
      if (state.users.size > 0 && marker !== undefined && marker === current) return;
      try {
        await mounts.prepare(dirOf(name), files, true);
        await writeAtomicDir(dirOf(name), files, marker);
      } catch (error) {
        if (state.users.size === 0) await emptyVolume(name);
        throw error;
      }
    } finally {
      release?.();
    }
    log.info("dso volume mounted", { volume: name, files: files.length });
    if (state.users.size > 0) options.onFilesChanged?.(name);
  }

  async function emptyVolume(name: string): Promise<void> {
    await clearAtomicDir(dirOf(name)).catch(() => undefined);
    await mounts.remove(dirOf(name));
  }

  return {
    root,
    async handle(req: Request): Promise<Response | undefined> {
      const route = routes[new URL(req.url, "http://localhost").pathname];
      if (!route || req.method !== "POST") return undefined;
      let reply: object;
      try {
        const text = await readCapped(req, MAX_PLUGIN_BODY_BYTES);
        reply = await route(text.trim() ? JSON.parse(text) : {});
      } catch (error) {
        reply = { Err: pluginError(error) };
      }
      return new Response(JSON.stringify(reply), { headers: { "content-type": PLUGIN_CONTENT_TYPE } });
    },
    rotate(volumeName: string, content: VolumeFiles) {
      return serialized(volumeName, async () => {
        const state = volumes.get(volumeName);
        if (!state || state.users.size === 0) return undefined;
        const started = performance.now();
        await mounts.prepare(dirOf(volumeName), content.files, false);
        const { bytes } = await writeAtomicDir(dirOf(volumeName), content.files, content.marker);
        return { mode: "plugin" as const, targetPath: dirOf(volumeName), files: content.files.map((f) => f.name), bytes, durationMs: performance.now() - started };
      });
    },
    mountpointOf: (volumeName: string) => ((volumes.get(volumeName)?.users.size ?? 0) > 0 ? dirOf(volumeName) : undefined),
    mountedVolumes: () => [...volumes].filter(([, state]) => state.users.size > 0).map(([name]) => name),
    optionsOf: (volumeName: string) => volumes.get(volumeName)?.opts,
    async observe(volumeName: string) {
      const state = volumes.get(volumeName);
      if (!state) return undefined;
      const mounted = state.users.size > 0;
      const filesMarker = mounted ? await readAtomicMarker(dirOf(volumeName)).catch(() => undefined) : undefined;
      return { mounted, opts: state.opts, filesMarker, seen: new Map(state.seen) };
    },
    markSeen(volumeName: string, containerId: string, marker: string) {
      return serialized(volumeName, async () => {
        const state = volumes.get(volumeName);
        if (!state || state.users.size === 0) return;
        state.seen.set(containerId, marker);
        await save(volumeName, state);
      });
    },
    async syncUsers(running, listedAt) {
      for (const [name, state] of [...volumes]) {
        await serialized(name, async () => {
          const live = running.get(name) ?? new Set<string>();
          const staleSeen = [...state.seen.keys()].filter((id) => !live.has(id));
          for (const id of staleSeen) state.seen.delete(id);
          const newest = Math.max(0, ...state.since.values());
          const unused = live.size === 0 && state.users.size > 0 && newest < listedAt;
          // Two passes in a row must agree before files are dropped: one odd list never costs a
          // running container its secrets.
          state.unusedPasses = unused ? (state.unusedPasses ?? 0) + 1 : 0;
          const lostUnmount = unused && state.unusedPasses >= UNUSED_PASSES_BEFORE_DROP;
          if (lostUnmount) {
            state.users.clear();
            state.since.clear();
            await emptyVolume(name);
            log.info("dso volume: no running container uses it any more; dropped its mounts and files", { volume: name });
          }
          if (lostUnmount || staleSeen.length) await save(name, state);
        });
      }
    },
    async adopt(list) {
      const adopted: string[] = [];
      for (const { name, opts } of list) {
        if (!VOLUME_NAME.test(name) || volumes.has(name)) continue;
        await serialized(name, async () => {
          if (volumes.has(name)) return;
          const state = newState(opts);
          volumes.set(name, state);
          await save(name, state);
          adopted.push(name);
        });
      }
      return adopted;
    },
  };
}

function newState(opts: Record<string, string>): VolumeState {
  return { opts, users: new Map(), since: new Map(), seen: new Map() };
}

function dropMount(state: VolumeState, id: string): void {
  state.users.delete(id);
  state.since.delete(id);
  if (state.users.size === 0) state.seen.clear();
}

/** dockerd shows Err verbatim to the user: one line, prefixed so it is clearly ours, no control characters. */
export function pluginError(error: unknown): string {
  const code = error instanceof DsoError ? `${error.code}: ` : "";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we replace.
  return `dso: ${code}${describeError(error).split("\n")[0]}`.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** Names the field and what it must be; never echoes the value (valibot's "but received ..." would). */
function parse<T extends v.GenericSchema>(schema: T, body: unknown): v.InferOutput<T> {
  const result = v.safeParse(schema, body);
  if (result.success) return result.output;
  const issue = result.issues[0];
  const field = issue.path?.map((item) => String(item.key)).join(".") || "body";
  const problem = issue.message.replace(/^Invalid type: /, "").replace(/ but received .*$/s, "");
  throw new DsoError("BAD_REQUEST", `bad plugin request: ${printable(field, 32)}: ${problem}`);
}

/** How to mount a volume root by hand, for errors and `dso doctor`. */
export function volumeRootMountCommand(root: string): string {
  return `mount -t tmpfs -o mode=0700,size=64m,nosuid,nodev,noexec tmpfs ${root}`;
}

async function prepareRoot(root: string): Promise<void> {
  // Check before creating anything, so a wrong root does not even get empty directories on disk.
  if (!(await isRamBacked(await nearestExisting(root)))) throw notTmpfs(root);
  await mkdir(root, { recursive: true, mode: ROOT_MODE });
  if (!(await isRamBacked(root))) throw notTmpfs(root);
  // Before anything is read from it: a root others can write to may hold a planted key or record.
  await securePrivate(root, "volume root", `mount a tmpfs of root's own there: ${volumeRootMountCommand(root)}`);
}

async function securePrivate(dir: string, what: string, hint: string): Promise<void> {
  if ((await securePrivateDir(dir, what, hint)) === "closed") log.info(`closed the ${what} to other users (mode 0700)`, { dir });
}

function notTmpfs(root: string): DsoError {
  return new DsoError("DELIVERY_REFUSED", `volume root ${root} is not on tmpfs, so secrets would reach the disk`, {
    hint: `mount one first: ${volumeRootMountCommand(root)}`,
  });
}

async function loadRecords(dir: string): Promise<Map<string, VolumeState>> {
  const volumes = new Map<string, VolumeState>();
  for (const entry of await readdir(dir)) {
    const name = entry.replace(/\.json$/, "");
    if (!VOLUME_NAME.test(name) || entry === name) continue;
    try {
      const raw: unknown = JSON.parse(await readFile(join(dir, entry), "utf8"));
      const record = v.safeParse(StoredRecord, raw);
      if (record.success) {
        const { opts, users, since, seen } = record.output;
        volumes.set(name, { opts, users: new Map(Object.entries(users)), since: new Map(Object.entries(since)), seen: new Map(Object.entries(seen)) });
        continue;
      }
      volumes.set(name, newState(v.parse(LegacyRecord, raw)));
    } catch {
      log.warn("ignoring unreadable dso volume record", { volume: name });
    }
  }
  return volumes;
}

async function saveRecord(dir: string, name: string, state: VolumeState): Promise<void> {
  const record = {
    opts: state.opts,
    users: Object.fromEntries(state.users),
    since: Object.fromEntries(state.since),
    seen: Object.fromEntries(state.seen),
  };
  await writeFile(join(dir, `${name}.json`), JSON.stringify(record), { mode: 0o600 });
}
