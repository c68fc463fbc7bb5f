/**
 * DSO as a Docker (legacy, socket-based) volume driver. dockerd calls VolumeDriver.Mount before
 * the container starts; we resolve the volume's secrets then and write them with the atomic writer
 * into <root>/<volume> on tmpfs, so the entrypoint finds them, or we answer Err and the container
 * does not start (fail closed). The agent serves `handle` on its unix socket.
 *
 * Volume options (not secrets) are kept in memory and in <root>/.options (tmpfs), so an agent
 * restart does not forget volumes dockerd still knows.
 */
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { DEFAULT_VOLUMES_ROOT } from "../../config/defaults.ts";
import { describeError, DsoError } from "../../errors.ts";
import { log } from "../../log/logger.ts";
import { clearAtomicDir, writeAtomicDir } from "../atomic-dir.ts";
import { isRamBacked, nearestExisting } from "../tmpfs.ts";
import type { DeliveryResult, SecretFile } from "../types.ts";
import { parseDriverOptions } from "./driver-options.ts";


/** The media type dockerd sends and expects for plugin calls. */
const PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json";
/** Docker volume names: what `docker volume create` accepts, which also keeps them path-safe. */
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const OPTIONS_DIR = ".options";
const ROOT_MODE = 0o711;
const VOLUME_DIR_MODE = 0o755;

export type ResolveFiles = (volumeName: string, driverOpts: Readonly<Record<string, string>>, callerId?: string) => Promise<SecretFile[]>;

export interface VolumeDriverOptions {
  /** tmpfs base directory; verified with statfs, refused otherwise. */
  root?: string;
  resolveFiles: ResolveFiles;
}

export interface VolumeDriver {
  readonly root: string;
  /** Answers a plugin route, or undefined when the request is not one (the agent serves the rest). */
  handle(req: Request): Promise<Response | undefined>;
  /** Rewrites a mounted volume's files atomically; undefined when no container uses it. */
  rotate(volumeName: string, files: readonly SecretFile[]): Promise<DeliveryResult | undefined>;
  /** Names of volumes mounted by at least one container. */
  mountedVolumes(): string[];
  /** The host directory of a mounted volume (for the mode picker), undefined when not mounted. */
  mountpointOf(volumeName: string): string | undefined;
}

interface VolumeState {
  opts: Record<string, string>;
  /**
   * Open mounts per caller id. A count, not a set: dockerd reuses a container's id when it mounts
   * the volume again for an archive call (docker cp, putArchive) and unmounts after, so a set
   * would wipe the files of a running container after its first `docker cp`.
   */
  users: Map<string, number>;
}

const NameRequest = v.object({ Name: v.pipe(v.string(), v.regex(VOLUME_NAME, "is not a valid volume name")) });
const CreateRequest = v.object({ ...NameRequest.entries, Opts: v.optional(v.nullable(v.record(v.string(), v.string()))) });
const MountRequest = v.object({ ...NameRequest.entries, ID: v.optional(v.string(), "") });

export async function createVolumeDriver(options: VolumeDriverOptions): Promise<VolumeDriver> {
  const root = options.root ?? DEFAULT_VOLUMES_ROOT;
  await prepareRoot(root);
  const volumes = await loadOptions(root);
  const locks = new Map<string, Promise<unknown>>();
  const dirOf = (name: string) => join(root, name);

  /** Mount, Unmount, Remove and rotate of one volume run one at a time. */
  function serialized<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = locks.get(name) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    locks.set(name, settled);
    void settled.then(() => locks.get(name) === settled && locks.delete(name));
    return next;
  }

  const routes: Record<string, (body: unknown) => Promise<object>> = {
    "/Plugin.Activate": async () => ({ Implements: ["VolumeDriver"] }),
    "/VolumeDriver.Capabilities": async () => ({ Capabilities: { Scope: "local" } }),
    "/VolumeDriver.Create": async (body) => {
      const req = parse(CreateRequest, body);
      const opts = { ...(req.Opts ?? {}) };
      parseDriverOptions(opts); // refuse a bad uid/gid/mode at create time, not at first start
      if (!volumes.has(req.Name)) volumes.set(req.Name, { opts, users: new Map() });
      await saveOptions(root, req.Name, opts);
      return { Err: "" };
    },
    "/VolumeDriver.Remove": async (body) => {
      const { Name } = parse(NameRequest, body);
      return serialized(Name, async () => {
        const state = volumes.get(Name);
        if (state && state.users.size > 0) return { Err: `dso: volume ${Name} is in use by ${state.users.size} container(s)` };
        volumes.delete(Name);
        await rm(dirOf(Name), { recursive: true, force: true });
        await rm(join(root, OPTIONS_DIR, `${Name}.json`), { force: true });
        return { Err: "" };
      });
    },
    "/VolumeDriver.Mount": async (body) => {
      const { Name, ID } = parse(MountRequest, body);
      return serialized(Name, async () => {
        const state = volumes.get(Name);
        if (!state) return { Err: `dso: volume ${Name} is unknown to DSO; remove and recreate it` };
        if (state.users.size === 0) await fillVolume(Name, state, ID);
        state.users.set(ID, (state.users.get(ID) ?? 0) + 1);
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
        else state.users.delete(ID);
        if (state.users.size === 0) await emptyVolume(Name);
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
    return { Name: name, Mountpoint: state.users.size > 0 ? dirOf(name) : "", Status: { secrets: parseDriverOptions(state.opts).secrets.join(",") } };
  }

  async function fillVolume(name: string, state: VolumeState, callerId: string): Promise<void> {
    const files = await options.resolveFiles(name, state.opts, callerId || undefined);
    await mkdir(dirOf(name), { recursive: true, mode: VOLUME_DIR_MODE });
    try {
      await writeAtomicDir(dirOf(name), files);
    } catch (error) {
      await emptyVolume(name);
      throw error;
    }
    log.info("dso volume mounted", { volume: name, files: files.length });
  }

  async function emptyVolume(name: string): Promise<void> {
    await clearAtomicDir(dirOf(name)).catch(() => undefined);
    await rm(dirOf(name), { recursive: true, force: true });
  }

  return {
    root,
    async handle(req: Request): Promise<Response | undefined> {
      const route = routes[new URL(req.url, "http://localhost").pathname];
      if (!route || req.method !== "POST") return undefined;
      let reply: object;
      try {
        const text = await req.text();
        reply = await route(text.trim() ? JSON.parse(text) : {});
      } catch (error) {
        reply = { Err: pluginError(error) };
      }
      return new Response(JSON.stringify(reply), { headers: { "content-type": PLUGIN_CONTENT_TYPE } });
    },
    rotate(volumeName: string, files: readonly SecretFile[]) {
      return serialized(volumeName, async () => {
        const state = volumes.get(volumeName);
        if (!state || state.users.size === 0) return undefined;
        const started = performance.now();
        const { bytes } = await writeAtomicDir(dirOf(volumeName), files);
        return { mode: "plugin" as const, targetPath: dirOf(volumeName), files: files.map((f) => f.name), bytes, durationMs: performance.now() - started };
      });
    },
    mountpointOf: (volumeName: string) => ((volumes.get(volumeName)?.users.size ?? 0) > 0 ? dirOf(volumeName) : undefined),
    mountedVolumes: () => [...volumes].filter(([, state]) => state.users.size > 0).map(([name]) => name),
  };
}

/** dockerd shows Err verbatim to the user: one line, prefixed so it is clearly ours. */
function pluginError(error: unknown): string {
  const code = error instanceof DsoError ? `${error.code}: ` : "";
  return `dso: ${code}${describeError(error).split("\n")[0]}`;
}

function parse<T extends v.GenericSchema>(schema: T, body: unknown): v.InferOutput<T> {
  const result = v.safeParse(schema, body);
  if (!result.success) throw new DsoError("BAD_REQUEST", `bad plugin request: ${v.summarize(result.issues).split("\n")[0]}`);
  return result.output;
}

async function prepareRoot(root: string): Promise<void> {
  // Check before creating anything, so a wrong root does not even get empty directories on disk.
  if (!(await isRamBacked(await nearestExisting(root)))) throw notTmpfs(root);
  await mkdir(join(root, OPTIONS_DIR), { recursive: true, mode: ROOT_MODE });
  if (!(await isRamBacked(root))) throw notTmpfs(root);
}

function notTmpfs(root: string): DsoError {
  return new DsoError("DELIVERY_REFUSED", `volume root ${root} is not on tmpfs, so secrets would reach the disk`, {
    hint: `mount one first: mount -t tmpfs -o mode=0711 tmpfs ${root}`,
  });
}

async function loadOptions(root: string): Promise<Map<string, VolumeState>> {
  const volumes = new Map<string, VolumeState>();
  const dir = join(root, OPTIONS_DIR);
  for (const entry of await readdir(dir)) {
    const name = entry.replace(/\.json$/, "");
    if (!VOLUME_NAME.test(name) || entry === name) continue;
    try {
      const opts = JSON.parse(await readFile(join(dir, entry), "utf8")) as Record<string, string>;
      volumes.set(name, { opts, users: new Map() });
    } catch {
      log.warn("ignoring unreadable dso volume options", { volume: name });
    }
  }
  return volumes;
}

async function saveOptions(root: string, name: string, opts: Record<string, string>): Promise<void> {
  await writeFile(join(root, OPTIONS_DIR, `${name}.json`), JSON.stringify(opts), { mode: 0o600 });
}
