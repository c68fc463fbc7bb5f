/**
 * Env injection: a container's variables are set at creation, so a container whose
 * `dso.env-version` label is not the wanted marker gets its values checked and, when they differ,
 * is re-created (rolling, see strategy-runner.ts) with them and the new label.
 */
import { DsoError } from "../errors.ts";
import type { FetchBatch } from "../secrets/source.ts";
import { selectionOf, type Desired } from "./desired.ts";
import { buildDeliveries } from "./files.ts";
import type { ReconcilerDeps } from "./reconcile-deps.ts";
import type { SecretVersions } from "./secret-versions.ts";

export interface EnvConvergence {
  /** The container's variables differ from the wanted ones: re-create it with `values`. */
  recreate: boolean;
  values: Record<string, string>;
  /** The label value the re-created container carries. */
  marker: string;
}

/** What to do about a container's secret variables; undefined when they are current. */
export async function convergeEnv(
  deps: Pick<ReconcilerDeps, "docker" | "markers">,
  versions: SecretVersions,
  d: Desired,
  batch: FetchBatch,
): Promise<EnvConvergence | undefined> {
  if (d.envSpecs.length === 0) return undefined;
  const names = d.envSpecs.map((s) => s.name);
  const known = versions.fingerprintsOf(names);
  if (known && deps.markers.matches(d.envMarker, known)) return undefined;
  const { values, errors } = await batch.values(names);
  if (errors.length) throw new DsoError("PROVIDER_UNAVAILABLE", errors.join("; "));
  const built = buildDeliveries({ ...selectionOf(d), secrets: d.envSpecs }, values);
  if (built.errors.length) throw new DsoError("DELIVERY_FAILED", built.errors.join("; "));
  const fingerprints = Object.fromEntries(names.map((n) => [n, values.get(n)!.fingerprint]));
  const marker = deps.markers.marker(fingerprints);
  if (marker === d.envMarker) return undefined;
  const inspect = await deps.docker.getContainer(d.id).inspect();
  const have = new Set(inspect.Config.Env ?? []);
  const recreate = Object.entries(built.env).some(([k, v]) => !have.has(`${k}=${v}`));
  return { recreate, values: built.env, marker };
}
