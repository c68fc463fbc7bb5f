/**
 * One-off delivery (`dso inject`): the container's own secrets plus any named ones, now, without
 * a strategy, whatever the markers say. Reports names, versions and modes, never values.
 */
import type Dockerode from "dockerode";
import type { InjectReport } from "../api/contract.ts";
import type { DsoConfig, SecretSpec } from "../config/types.ts";
import { DsoError } from "../errors.ts";
import { FetchBatch } from "../secrets/source.ts";
import type { ContainerStatusBook } from "./container-status.ts";
import type { ContainerConverger } from "./converge.ts";
import { selectionOf, type Desired } from "./desired.ts";
import { groupByTarget } from "./files.ts";
import type { ReconcilerDeps } from "./reconcile-deps.ts";
import { implicitSecretSpec, type Selection } from "./selection.ts";

export interface InjectDeps extends Pick<ReconcilerDeps, "docker" | "store" | "source" | "queue" | "config"> {
  /** What the reconciler wants in a listed container (undefined: not served, e.g. a Swarm task). */
  desiredOf(entry: Dockerode.ContainerInfo): Promise<Desired | undefined>;
  converger: ContainerConverger;
  book: ContainerStatusBook;
}

export async function injectIntoContainer(deps: InjectDeps, container: string, names: string[] = [], signal?: AbortSignal): Promise<InjectReport> {
  const inspect = await deps.docker
    .getContainer(container)
    .inspect()
    .catch(() => {
      throw new DsoError("BAD_REQUEST", `no such container: ${container}`);
    });
  if (!inspect.State.Running) throw new DsoError("BAD_REQUEST", `container ${container} is not running`);
  const [entry] = await deps.docker.listContainers({ filters: { id: [inspect.Id] } });
  const config = deps.config();
  const base = (entry ? await deps.desiredOf(entry) : undefined) ?? emptyDesired(inspect, config);
  const extra = names.map((n) => config.secrets.find((s) => s.name === n) ?? implicitSecretSpec(n, config));
  const unknown = names.filter((_, i) => !extra[i]);
  if (unknown.length) throw new DsoError("SECRET_NOT_FOUND", `unknown secret(s): ${unknown.join(", ")}; list them in secrets[] of dso.yaml`);
  const selection = { ...selectionOf(base) };
  // Files only: variables need a re-created container, which is a strategy, not an injection.
  const specs = [...(selection.secrets ?? []).filter((s) => !names.includes(s.name)), ...extra.map((s) => s!)].filter((s) => s.inject.type === "file");
  const desired = withSpecs(base, selection, specs);
  if (desired.targets.length === 0 && desired.volumes.length === 0 && desired.envSpecs.length === 0) {
    throw new DsoError("BAD_REQUEST", `container ${desired.name} has no DSO secrets; name some with --secret`);
  }
  for (const spec of specs) deps.store.ensure(spec);
  const batch = new FetchBatch(deps.source, new Set(desired.secrets), signal);
  try {
    const report = await deps.queue.run(`container:${desired.id}`, () =>
      deps.converger.converge({ ...desired, strategy: "none" }, batch, { signal, force: true, trigger: "inject" }),
    );
    const view = deps.book.get(desired.id);
    return {
      container: desired.id,
      name: desired.name,
      deliveries: view?.deliveries ?? [],
      secrets: specs.map((s) => ({ name: s.name, version: deps.store.get(s.name)?.version, delivered: report.delivered.includes(s.name) })),
      ...(report.error ? { error: report.error } : {}),
    };
  } finally {
    batch.release();
  }
}

function emptyDesired(inspect: Dockerode.ContainerInspectInfo, config: DsoConfig): Desired {
  return {
    id: inspect.Id,
    name: inspect.Name.replace(/^\//, ""),
    targets: [],
    envSpecs: [],
    volumes: [],
    strategy: "none",
    signal: config.agent.rotation.signal,
    healthCheckTimeoutMs: config.agent.rotation.healthCheckTimeoutMs,
    secrets: [],
  };
}

/** The desired state of a container with its file and env secrets replaced by `specs`. */
function withSpecs(base: Desired, selection: Selection, specs: SecretSpec[]): Desired {
  const sel = { ...selection, secrets: specs };
  const byPath = groupByTarget(sel, specs);
  return {
    ...base,
    selection: sel,
    targets: [...byPath].map(([path, s]) => ({ path, specs: s })),
    envSpecs: specs.filter((s) => s.inject.type === "env"),
    secrets: [...new Set([...specs.map((s) => s.name), ...base.volumes.flatMap((v) => v.secrets)])],
  };
}
