/**
 * Versions as the reconciler compares and reports them: the wanted fingerprints of a set of
 * secrets, which secrets a container went from one version to another of, the short versions the
 * audit trail shows, and when a change was first seen. Read from the store and the keyed markers.
 */
import type { SecretStore } from "../secrets/store.ts";
import type { DynamicCredentials } from "../secrets/types.ts";
import type { VersionMarkers } from "../secrets/version-marker.ts";
import type { SecretVersion } from "./reconcile-deps.ts";

export class SecretVersions {
  constructor(
    private readonly store: SecretStore,
    private readonly markers: VersionMarkers,
    private readonly dynamic: () => DynamicCredentials | undefined = () => undefined,
  ) {}

  /**
   * The wanted fingerprint of every name, or undefined when one is not known yet; a dynamic
   * secret's is the lease of `container` (its consumer).
   */
  fingerprintsOf(names: readonly string[], container?: string): Record<string, string> | undefined {
    const out: Record<string, string> = {};
    const dynamic = this.dynamic();
    for (const name of names) {
      const fp = container && dynamic?.isDynamic(name) ? dynamic.fingerprintFor(name, container) : this.store.get(name)?.fingerprint;
      if (!fp) return undefined;
      out[name] = fp;
    }
    return out;
  }

  /** The secrets a container went from one version to another of (its strategy is due). */
  changedSecrets(before: string | undefined, after: string, names: readonly string[]): string[] {
    const old = this.markers.read(before, names);
    const now = this.markers.read(after, names);
    if (!old || !now) return [];
    return names.filter((n) => old.has(n) && now.has(n) && old.get(n) !== now.get(n));
  }

  /** Names with a short version for the audit trail: the provider's id, else the keyed token. */
  versionsOf(names: readonly string[]): SecretVersion[] {
    return names.map((name) => {
      const state = this.store.get(name);
      const version = state?.version ?? (state?.fingerprint ? this.markers.token(name, state.fingerprint) : undefined);
      return { name, ...(version ? { version } : {}) };
    });
  }

  /** When the newest of these secrets was seen changing (ms), for change→delivered latency. */
  changedAt(names: readonly string[]): number | undefined {
    const times = names.map((n) => this.store.get(n)?.lastChangeAt).filter((t) => t !== undefined).map((t) => Date.parse(t));
    return times.length ? Math.max(...times) : undefined;
  }
}
