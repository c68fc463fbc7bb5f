/**
 * DSO volumes (plugin mode) as the agent serves them: the volume driver on the agent socket,
 * created on first use on the tmpfs at agent.volumes_root (mounted by the agent when needed);
 * a volume's files are the secrets named in its `secrets=` driver option; a change at the
 * provider rewrites every mounted volume that holds the secret.
 */
import type { FieldLogger } from "../log/logger.ts";
import type Dockerode from "dockerode";
import type { DsoConfig } from "../config/types.ts";
import { parseDriverOptions } from "../delivery/plugin/driver-options.ts";
import { createVolumeDriver, type VolumeDriver } from "../delivery/plugin/volume-driver.ts";
import type { SecretFile } from "../delivery/types.ts";
import { describeError, DsoError } from "../errors.ts";
import { buildDeliveries, type FetchedSecret } from "../reloader/files.ts";
import { implicitSecretSpec, type Selection } from "../reloader/selection.ts";
import type { SecretStore } from "./secret-store.ts";
import { ensureTmpfsRoot } from "./volumes-root.ts";

export interface DsoVolumesDeps {
  docker(): Dockerode;
  config(): DsoConfig;
  store: SecretStore;
  fetchValues(names: string[]): Promise<{ values: Map<string, FetchedSecret>; errors: string[] }>;
  log: Pick<FieldLogger, "info" | "error">;
}

export class DsoVolumes {
  private driver?: Promise<VolumeDriver>;
  private instance?: VolumeDriver;

  constructor(private readonly deps: DsoVolumesDeps) {}

  /** Answers /Plugin.* and /VolumeDriver.* requests; undefined for any other route. */
  handler(): (req: Request) => Promise<Response | undefined> {
    return async (req) => {
      const path = new URL(req.url, "http://dso").pathname;
      if (!path.startsWith("/Plugin.") && !path.startsWith("/VolumeDriver.")) return undefined;
      try {
        return await (await this.ensureDriver()).handle(req);
      } catch (error) {
        // dockerd shows Err to the user: the container does not start (fail closed).
        return Response.json({ Err: describeError(error) });
      }
    };
  }

  mountpointOf(volume: string): string | undefined {
    return this.instance?.mountpointOf(volume);
  }

  private ensureDriver(): Promise<VolumeDriver> {
    this.driver ??= (async () => {
      const root = this.deps.config().agent.volumesRoot;
      if ((await ensureTmpfsRoot(root)) === "mounted") this.deps.log.info("mounted a tmpfs for DSO volumes", { root });
      this.instance = await createVolumeDriver({ root, resolveFiles: (name, opts) => this.files(name, opts) });
      return this.instance;
    })().catch((error) => {
      this.driver = undefined;
      throw error;
    });
    return this.driver;
  }

  /** The files of a DSO volume: the secrets named in its `secrets=` driver option. */
  private async files(volume: string, driverOpts: Readonly<Record<string, string>>): Promise<SecretFile[]> {
    const config = this.deps.config();
    const opts = parseDriverOptions(driverOpts);
    if (opts.secrets.length === 0) {
      throw new DsoError("BAD_REQUEST", `volume ${volume} names no secrets; create it with -o secrets=name1,name2`);
    }
    const specs = opts.secrets.map((name) => config.secrets.find((s) => s.name === name) ?? implicitSecretSpec(name, config));
    const unknown = opts.secrets.filter((_, i) => !specs[i]);
    if (unknown.length) throw new DsoError("SECRET_NOT_FOUND", `volume ${volume}: unknown secret(s) ${unknown.join(", ")}; list them in secrets[] of dso.yaml`);
    const known = specs.filter((s) => s !== undefined);
    for (const spec of known) this.deps.store.ensure(spec);
    const { values, errors } = await this.deps.fetchValues(opts.secrets);
    if (errors.length) throw new DsoError("PROVIDER_UNAVAILABLE", `volume ${volume}: ${errors.join("; ")}`);
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
    return built.groups.flatMap((g) => g.files);
  }

  /** Rewrite mounted DSO volumes that hold any of the changed secrets; old files stay on failure. */
  async rotate(changed: string[]): Promise<void> {
    const driver = await this.driver?.catch(() => undefined);
    if (!driver) return;
    for (const volume of driver.mountedVolumes()) {
      try {
        const info = (await this.deps.docker().getVolume(volume).inspect()) as { Options?: Record<string, string> | null };
        const opts = info.Options ?? {};
        if (!parseDriverOptions(opts).secrets.some((s) => changed.includes(s))) continue;
        await driver.rotate(volume, await this.files(volume, opts));
        this.deps.log.info("rotated secrets in DSO volume", { volume });
      } catch (error) {
        this.deps.log.error("volume rotation failed; the previous files stay", { volume, error: describeError(error) });
      }
    }
  }
}
