/**
 * Swarm mode: a service's secrets are Swarm secrets, and rotation is a service update that swaps
 * them, so Swarm rolls the change out across hosts with its own update engine. DSO creates one
 * versioned Swarm secret per file (its name carries a keyed token of the provider fingerprints,
 * VersionMarkers.swarmToken, never anything a guess of the value could be checked against), points
 * the service at the new ones, and removes its old versions once no service uses them. One agent
 * on a manager serves the whole cluster. A new host key (a reboot) gives every file new names
 * once: one service update each, never a missed change.
 */
import type { FieldLogger } from "../log/logger.ts";
import { posix } from "node:path";
import type Dockerode from "dockerode";
import type { DsoConfig } from "../config/types.ts";
import { describeError } from "../errors.ts";
import { releaseFetch } from "../secrets/source.ts";
import type { FetchResult } from "../secrets/types.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import { buildDeliveries } from "./files.ts";
import { selectContainer, type Selection } from "./selection.ts";

export const MANAGED_LABEL = "dso.managed";
const SERVICE_LABEL = "dso.service";
const TARGET_LABEL = "dso.target";

export interface SwarmDeps {
  docker: Dockerode;
  config: () => DsoConfig;
  fetchValues(names: string[]): Promise<FetchResult>;
  /** Keys the version part of secret names (the host key). */
  markers: VersionMarkers;
  log: Pick<FieldLogger, "info" | "warn">;
}

export interface ServiceReport {
  service: string;
  action: "updated" | "unchanged" | "failed";
  secrets: string[];
  error?: string;
}

type ServiceInfo = Dockerode.Service & {
  ID: string;
  Version: { Index: number };
  Spec: Dockerode.ServiceSpec & { Name: string; Labels?: Record<string, string> };
};

export async function isSwarmManager(docker: Dockerode): Promise<boolean> {
  const info = (await docker.info()) as { Swarm?: { ControlAvailable?: boolean; LocalNodeState?: string } };
  return info.Swarm?.LocalNodeState === "active" && info.Swarm.ControlAvailable === true;
}

/** Container labels of a service's tasks and the service's own labels both count. */
function serviceLabels(service: ServiceInfo): Record<string, string> {
  const container = (service.Spec.TaskTemplate as { ContainerSpec?: { Labels?: Record<string, string> } })?.ContainerSpec?.Labels;
  return { ...(container ?? {}), ...(service.Spec.Labels ?? {}) };
}

export function swarmSecretName(markers: VersionMarkers, service: string, target: string, fingerprints: Readonly<Record<string, string>>): string {
  const digest = markers.swarmToken(service, target, fingerprints);
  const base = `dso_${service}_${posix.basename(target)}`.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 50);
  return `${base}_${digest}`;
}

interface WantedSecret {
  name: string;
  target: string;
  data: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
}

export class SwarmRotator {
  constructor(private readonly deps: SwarmDeps) {}

  async services(): Promise<Array<{ service: ServiceInfo; selection: Selection }>> {
    const services = (await this.deps.docker.listServices()) as unknown as ServiceInfo[];
    const selected: Array<{ service: ServiceInfo; selection: Selection }> = [];
    for (const service of services) {
      const outcome = selectContainer({ id: service.ID, name: service.Spec.Name, labels: serviceLabels(service) }, this.deps.config());
      for (const w of outcome.warnings) this.deps.log.warn(w.replace(/^container /, "service "));
      if (outcome.selected) selected.push({ service, selection: outcome.selection });
    }
    return selected;
  }

  /** Make every DSO service use Swarm secrets holding the current values (only names filter). */
  async reconcile(only?: Set<string>): Promise<ServiceReport[]> {
    const reports: ServiceReport[] = [];
    for (const { service, selection } of await this.services()) {
      if (only && !selection.secrets.some((s) => only.has(s.name))) continue;
      reports.push(await this.reconcileService(service, selection));
    }
    await this.removeUnused();
    return reports;
  }

  private async reconcileService(service: ServiceInfo, selection: Selection): Promise<ServiceReport> {
    const names = selection.secrets.map((s) => s.name);
    const report: ServiceReport = { service: service.Spec.Name, action: "unchanged", secrets: names };
    let fetched: FetchResult | undefined;
    try {
      fetched = await this.deps.fetchValues(names);
      const { values, errors } = fetched;
      const built = buildDeliveries(selection, values);
      const problems = [...errors, ...built.errors];
      if (problems.length) throw new Error(problems.join("; "));
      const wanted: WantedSecret[] = built.groups.flatMap((group) =>
        group.files.map((file) => {
          const target = posix.join(group.path, file.name);
          // Any change of a secret in this directory gives its files new Swarm secret versions.
          return { name: swarmSecretName(this.deps.markers, service.Spec.Name, target, group.fingerprints), target, data: file.content, mode: file.mode, uid: file.uid, gid: file.gid };
        }),
      );
      const refs = await this.ensureSecrets(service.Spec.Name, wanted);
      const spec = structuredClone(service.Spec) as Dockerode.ServiceSpec & { TaskTemplate: { ContainerSpec: { Secrets?: Dockerode.SecretReference[] } } };
      const current = spec.TaskTemplate.ContainerSpec.Secrets ?? [];
      const targets = new Set(wanted.map((w) => w.target));
      const kept = current.filter((ref) => !targets.has(ref.File?.Name ?? ""));
      const next = [...kept, ...refs];
      const same =
        current.length === next.length &&
        next.every((ref) => current.some((c) => c.SecretName === ref.SecretName && c.File?.Name === ref.File?.Name));
      if (same) return report;
      spec.TaskTemplate.ContainerSpec.Secrets = next;
      await this.deps.docker.getService(service.ID).update({ ...spec, version: service.Version.Index } as never);
      this.deps.log.info("updated swarm service to new secret versions", { service: service.Spec.Name, files: wanted.length });
      return { ...report, action: "updated" };
    } catch (error) {
      this.deps.log.warn("swarm service rotation failed", { service: service.Spec.Name, error: describeError(error) });
      return { ...report, action: "failed", error: describeError(error) };
    } finally {
      // Swarm takes a secret's data base64 in a JSON body (a copy by nature); ours is wiped.
      releaseFetch(fetched);
    }
  }

  private async ensureSecrets(service: string, wanted: WantedSecret[]): Promise<Dockerode.SecretReference[]> {
    const existing = (await this.deps.docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } })) as Array<{
      ID: string;
      Spec?: { Name?: string };
    }>;
    const byName = new Map(existing.map((s) => [s.Spec?.Name ?? "", s.ID]));
    const refs: Dockerode.SecretReference[] = [];
    for (const w of wanted) {
      let id = byName.get(w.name);
      if (!id) {
        // Body only: docker-modem would otherwise copy the spec, Data (the value) included,
        // into the URL's query string, which dockerd's debug log prints.
        const body = {
          Name: w.name,
          Labels: { [MANAGED_LABEL]: "true", [SERVICE_LABEL]: service, [TARGET_LABEL]: w.target },
          Data: Buffer.from(w.data).toString("base64"),
        };
        const created = (await this.deps.docker.createSecret({ _query: {}, _body: body } as never)) as { id?: string; ID?: string };
        id = created.id ?? created.ID ?? "";
      }
      refs.push({ SecretID: id, SecretName: w.name, File: { Name: w.target, UID: String(w.uid), GID: String(w.gid), Mode: w.mode } });
    }
    return refs;
  }

  /** Remove DSO-made secrets no service references; Swarm refuses while tasks still use one. */
  async removeUnused(): Promise<number> {
    const services = (await this.deps.docker.listServices()) as unknown as ServiceInfo[];
    const inUse = new Set(
      services.flatMap((s) =>
        ((s.Spec.TaskTemplate as { ContainerSpec?: { Secrets?: Dockerode.SecretReference[] } })?.ContainerSpec?.Secrets ?? []).map((r) => r.SecretID),
      ),
    );
    const managed = (await this.deps.docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } })) as Array<{ ID: string }>;
    let removed = 0;
    for (const secret of managed) {
      if (inUse.has(secret.ID)) continue;
      try {
        await this.deps.docker.getSecret(secret.ID).remove();
        removed++;
      } catch {
        // still used by a task that is shutting down: retried at the next reconcile
      }
    }
    return removed;
  }
}
