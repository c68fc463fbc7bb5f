/**
 * One-off delivery (`dso inject`): the container's own secrets plus any named ones, now, without
 * a strategy, whatever the markers say. A named secret is granted as a label would be: declared
 * (or through a provider's `allow_undeclared`) and within its targets. Reports names, versions
 * and modes, never values.
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
import { askedNameProblem, grantSecret, MAX_LABEL_SECRETS, type Selection } from "./selection.ts";

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
  const extra = grantNamed(base, names, config);
  const selection = { ...selectionOf(base) };
  // Files only: variables need a re-created container, which is a strategy, not an injection.
  const specs = [...(selection.secrets ?? []).filter((s) => !names.includes(s.name)), ...extra].filter((s) => s.inject.type === "file");
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

/**
 * The specs of the names `dso inject --secret` asks for, each granted to this container as a label
 * would be (declared, or through `allow_undeclared`; within the secret's targets), or
 * DELIVERY_REFUSED naming the container and every refused name. A container whose own labels are
 * unknown matches no label target.
 */
function grantNamed(base: Desired, names: string[], config: DsoConfig): SecretSpec[] {
  if (names.length > MAX_LABEL_SECRETS) throw new DsoError("BAD_REQUEST", `at most ${MAX_LABEL_SECRETS} secrets per inject`);
  const specs: SecretSpec[] = [];
  const refused: string[] = [];
  for (const name of names) {
    const problem = askedNameProblem(name);
    if (problem) throw new DsoError("BAD_REQUEST", `secrets ${problem}`);
    const grant = grantSecret(name, config, { kind: "container", id: base.id, name: base.name, labels: base.labels ?? {} });
    if ("spec" in grant) specs.push(grant.spec);
    else refused.push(grant.refused);
  }
  if (refused.length) throw new DsoError("DELIVERY_REFUSED", `container ${base.name}: ${refused.join("; ")}`);
  return specs;
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
    refusals: [],
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
