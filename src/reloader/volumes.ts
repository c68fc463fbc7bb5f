/**
 * DSO volumes (plugin mode) as the agent serves them: the volume driver on the agent socket, on
 * the tmpfs at agent.volumes_root; a volume's files are the secrets named in its `secrets=`
 * driver option, written with a version marker. Mount fetches through the secret source (no
 * Docker needed, so it answers while dockerd is still starting); the reconciler refreshes a
 * volume's files and tells each container that mounts it, through the driver's records.
 */
import type { DsoConfig } from "../config/types.ts";
import { parseDriverOptions, secretNamesOf } from "../delivery/plugin/driver-options.ts";
import { createVolumeDriver, MAX_PLUGIN_BODY_BYTES, pluginError, type VolumeDriver, type VolumeFiles, type VolumeObservation } from "../delivery/plugin/volume-driver.ts";
import { describeError, DsoError, type ErrorCode } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { FetchBatch, fetchErrorCode, type SecretSource } from "../secrets/source.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { FetchResult } from "../secrets/types.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import { isMapping } from "../util/is-mapping.ts";
import { readCapped } from "../util/json-body.ts";
import type { KeyedQueue } from "../util/keyed-queue.ts";
import { grantVolumeSecret } from "./desired.ts";
import { buildDeliveries } from "./files.ts";
import type { Selection } from "./selection.ts";

export interface DsoVolumesDeps {
  config(): DsoConfig;
  store: SecretStore;
  source: SecretSource;
  markers: VersionMarkers;
  queue: KeyedQueue;
  log: Pick<FieldLogger, "info" | "error">;
  /** Makes sure the volume root is a tmpfs (mounting one when needed). */
  prepareRoot(root: string): Promise<void>;
  /** Where volume records are kept, when not on the volume root's tmpfs ($DSO_VOLUME_RECORDS). */
  recordsDir?: string;
  /** A Mount changed the files of a volume that other containers use. */
  onFilesChanged(volume: string): void;
  /** Mount or Unmount answered (for the audit trail and metrics); `error` is dockerd's Err. */
  onMountCall?(call: { route: "Mount" | "Unmount"; volume: string; mountId?: string; secrets: string[]; seconds: number; error?: string }): void;
}

export class DsoVolumes {
  private driver?: Promise<VolumeDriver>;
  private instance?: VolumeDriver;

  constructor(private readonly deps: DsoVolumesDeps) {}

  /** Opens the driver now (records from tmpfs); on failure it is retried on the next request. */
  async start(): Promise<void> {
    await this.ensureDriver().catch((error) => this.deps.log.error("DSO volumes are not available yet", { error: describeError(error) }));
  }

  /** Answers /Plugin.* and /VolumeDriver.* requests; undefined for any other route. */
  handler(): (req: Request) => Promise<Response | undefined> {
    return async (req) => {
      const path = new URL(req.url, "http://dso").pathname;
      if (!path.startsWith("/Plugin.") && !path.startsWith("/VolumeDriver.")) return undefined;
      try {
        const route = path === "/VolumeDriver.Mount" ? "Mount" : path === "/VolumeDriver.Unmount" ? "Unmount" : undefined;
        if (!route || !this.deps.onMountCall) return await (await this.ensureDriver()).handle(req);
        const text = await readCapped(req, MAX_PLUGIN_BODY_BYTES);
        const started = performance.now();
        const response = (await (await this.ensureDriver()).handle(new Request(new URL(req.url, "http://dso").href, { method: req.method, body: text, headers: req.headers })))!;
        const seconds = (performance.now() - started) / 1000;
        this.reportMountCall(route, text, (await response.clone().json().catch(() => ({}))) as { Err?: string }, seconds);
        return response;
      } catch (error) {
        // dockerd shows Err to the user: the container does not start (fail closed).
        return Response.json({ Err: pluginError(error) });
      }
    };
  }

  private reportMountCall(route: "Mount" | "Unmount", body: string, reply: { Err?: string }, seconds: number): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return;
    }
    // A body of null or a list is no mount call (it threw a TypeError here; found by test/fuzz).
    if (!isMapping(parsed) || typeof parsed.Name !== "string") return;
    const request = parsed as { Name: string; ID?: unknown };
    const opts = this.optionsOf(request.Name);
    this.deps.onMountCall?.({
      route,
      volume: request.Name,
      ...(typeof request.ID === "string" && request.ID ? { mountId: request.ID } : {}),
      secrets: opts ? secretNamesOf(opts) : [],
      seconds,
      ...(reply.Err ? { error: reply.Err } : {}),
    });
  }

  mountpointOf(volume: string): string | undefined {
    return this.instance?.mountpointOf(volume);
  }

  /** Driver options of a volume the driver has a record of. */
  optionsOf(volume: string): Readonly<Record<string, string>> | undefined {
    return this.instance?.optionsOf(volume);
  }

  observe(volume: string): Promise<VolumeObservation | undefined> {
    return this.instance?.observe(volume) ?? Promise.resolve(undefined);
  }

  markSeen(volume: string, containerId: string, marker: string): Promise<void> {
    return this.instance?.markSeen(volume, containerId, marker) ?? Promise.resolve();
  }

  syncUsers(running: ReadonlyMap<string, ReadonlySet<string>>, listedAt: number): Promise<void> {
    return this.instance?.syncUsers(running, listedAt) ?? Promise.resolve();
  }

  async adopt(volumes: ReadonlyArray<{ name: string; opts: Record<string, string> }>): Promise<string[]> {
    const driver = await this.driver?.catch(() => undefined);
    return driver ? driver.adopt(volumes) : [];
  }

  private ensureDriver(): Promise<VolumeDriver> {
    this.driver ??= (async () => {
      const root = this.deps.config().agent.volumesRoot;
      await this.deps.prepareRoot(root);
      this.instance = await createVolumeDriver({
        root,
        ...(this.deps.recordsDir ? { recordsDir: this.deps.recordsDir } : {}),
        queue: this.deps.queue,
        resolveFiles: (name, opts) => this.mountFiles(name, opts),
        wantedMarker: (name, opts) => this.wantedMarker(name, opts),
        onFilesChanged: (name) => this.deps.onFilesChanged(name),
      });
      return this.instance;
    })().catch((error) => {
      this.driver = undefined;
      throw error;
    });
    return this.driver;
  }

  /** The marker the volume's files should carry, from known fingerprints only (no fetch). */
  wantedMarker(volume: string, driverOpts: Readonly<Record<string, string>>): string | undefined {
    return this.deps.markers.known(secretNamesOf(driverOpts), (name) => this.deps.store.get(name)?.fingerprint);
  }

  /** A Mount's own window: the files of the volume, and `release` to wipe their values once written. */
  private async mountFiles(volume: string, driverOpts: Readonly<Record<string, string>>): Promise<VolumeFiles> {
    const batch = new FetchBatch(this.deps.source, new Set());
    try {
      const files = await this.files(volume, driverOpts, (names) => batch.values(names));
      return { ...files, release: () => batch.release() };
    } catch (error) {
      batch.release();
      throw error;
    }
  }

  /** The files of a DSO volume, fetched with `fetch` (a Mount's own window, or a wave's batch). */
  async files(volume: string, driverOpts: Readonly<Record<string, string>>, fetch: (names: string[]) => Promise<FetchResult>): Promise<VolumeFiles> {
    const config = this.deps.config();
    const opts = parseDriverOptions(driverOpts);
    if (opts.secrets.length === 0) {
      throw new DsoError("BAD_REQUEST", `volume ${volume} names no secrets; create it with -o secrets=name1,name2`);
    }
    const specs = opts.secrets.map((name) => grantVolumeSecret(volume, name, config));
    const unknown = opts.secrets.filter((_, i) => !specs[i]);
    if (unknown.length) throw new DsoError("SECRET_NOT_FOUND", `volume ${volume}: unknown secret(s) ${unknown.join(", ")}; list them in secrets[] of dso.yaml`);
    const known = specs.filter((s) => s !== undefined);
    for (const spec of known) this.deps.store.ensure(spec);
    const { values, errors, failed } = await fetch(opts.secrets);
    if (errors.length) throw new DsoError(fetchErrorCode(failed) as ErrorCode, `volume ${volume}: ${errors.join("; ")}`);
    const selection: Selection = {
      containerId: volume,
      containerName: `volume ${volume}`,
      secrets: known,
      strategy: "none",
      signal: "SIGHUP",
      files: { path: "/", mode: opts.mode, uid: opts.uid, gid: opts.gid },
      healthCheckTimeoutMs: 0,
    };
    const built = buildDeliveries(selection, values);
    if (built.errors.length) throw new DsoError("DELIVERY_FAILED", `volume ${volume}: ${built.errors.join("; ")}`);
    const fingerprints = Object.assign({}, ...built.groups.map((g) => g.fingerprints)) as Record<string, string>;
    return { files: built.groups.flatMap((g) => g.files), marker: this.deps.markers.marker(fingerprints) };
  }

  /**
   * Makes a mounted volume hold the current version (fetching with `fetch` only when its files
   * are not the wanted version); returns the marker of the files now in it.
   */
  async refresh(volume: string, fetch: (names: string[]) => Promise<FetchResult>): Promise<string | undefined> {
    const driver = this.instance;
    const seen = await driver?.observe(volume);
    if (!driver || !seen?.mounted) return undefined;
    const wanted = this.wantedMarker(volume, seen.opts);
    if (wanted && seen.filesMarker === wanted) return wanted;
    const content = await this.files(volume, seen.opts, fetch);
    if (content.marker && content.marker === seen.filesMarker) return content.marker;
    await driver.rotate(volume, content);
    this.deps.log.info("rotated secrets in DSO volume", { volume });
    return content.marker;
  }
}

