/**
 * Version markers: what the agent writes next to every delivered file set so that the version
 * actually in a container can be read back from the container itself (see docs/architecture.md,
 * "Rotation is reconciliation"). A marker lists, per secret, a short token of the fingerprint it
 * was delivered at. Tokens are keyed MACs (HMAC-SHA-256 with a per-host key), so neither a marker
 * nor `dso ls` output says anything about a value, even when a provider's fingerprint is a hash
 * of it. The key lives in memory and in a 0600 file on tmpfs, so agent restarts keep comparing
 * equal; after a reboot (new key) every container is new anyway.
 */
import { createHmac } from "node:crypto";

const MARKER_PREFIX = "dso1:";
const NAME_ID_HEX = 8;
const TOKEN_HEX = 12;
/** A symlink target holds at most PATH_MAX bytes; beyond this many secrets one token covers all. */
const MAX_ENTRIES = 150;
/** The entry name of that one token starts with this, followed by a keyed id (another key reads nothing). */
const ALL_SECRETS = "*";
const MARKER = /^dso1:([0-9a-f*]+=[0-9a-f]+)(,[0-9a-f*]+=[0-9a-f]+)*$/;

export type VersionMap = ReadonlyMap<string, string>;

export class VersionMarkers {
  /**
   * `outputsDigest`: a secret's templates digest (config/outputs.ts), folded into its tokens so a
   * changed template is a new version like a changed value; secrets without templates keep their tokens.
   */
  constructor(
    private readonly key: Uint8Array,
    private readonly outputsDigest: (secret: string) => string | undefined = () => undefined,
  ) {}

  /** The fingerprint a token is computed over: the provider's, plus the outputs' digest when any. */
  private versionOf(secret: string, fingerprint: string): string[] {
    const digest = this.outputsDigest(secret);
    return digest === undefined ? [fingerprint] : [fingerprint, "outputs", digest];
  }

  private mac(...parts: string[]): string {
    return createHmac("sha256", this.key).update(parts.join("\0")).digest("hex");
  }

  /** The short token shown for a secret at a fingerprint (`dso ls`, logs). */
  token(secret: string, fingerprint: string): string {
    return this.mac("version", secret, ...this.versionOf(secret, fingerprint)).slice(0, TOKEN_HEX);
  }

  /**
   * The version part of a Swarm secret's name for a file of `service` at `target` holding secrets
   * at these fingerprints: stable while they are, new when any changes, meaningless without the key.
   */
  swarmToken(service: string, target: string, fingerprints: Readonly<Record<string, string>>): string {
    const names = Object.keys(fingerprints).sort();
    return this.mac("swarm", service, target, ...names.flatMap((n) => [n, ...this.versionOf(n, fingerprints[n]!)])).slice(0, TOKEN_HEX);
  }

  private nameId(secret: string): string {
    return this.mac("name", secret).slice(0, NAME_ID_HEX);
  }

  /** The entry name of a marker with one token for the whole set (more than MAX_ENTRIES secrets). */
  private allId(): string {
    return `${ALL_SECRETS}${this.mac("all-secrets").slice(0, NAME_ID_HEX)}`;
  }

  /** The marker for a file set holding these secrets at these fingerprints. */
  marker(fingerprints: Readonly<Record<string, string>>): string {
    const names = Object.keys(fingerprints).sort();
    if (names.length > MAX_ENTRIES) {
      return `${MARKER_PREFIX}${this.allId()}=${this.mac("all", ...names.flatMap((n) => [n, ...this.versionOf(n, fingerprints[n]!)])).slice(0, TOKEN_HEX)}`;
    }
    const entries = names.map((n) => `${this.nameId(n)}=${this.token(n, fingerprints[n]!)}`).sort();
    return `${MARKER_PREFIX}${entries.join(",")}`;
  }

  /**
   * The token a marker records for each of `secrets`; a secret the marker does not name is absent.
   * A marker with one token for the whole set gives that token for every secret: any change in the
   * set then reads as a change of each. Undefined when there is no marker or it is not one of ours.
   */
  read(marker: string | undefined, secrets: readonly string[]): VersionMap | undefined {
    if (!marker || !MARKER.test(marker)) return undefined;
    const entries = new Map(
      marker
        .slice(MARKER_PREFIX.length)
        .split(",")
        .map((e) => e.split("=") as [string, string]),
    );
    const tokens = new Map<string, string>();
    const all = entries.get(this.allId());
    if (all) {
      for (const secret of secrets) tokens.set(secret, all);
      return tokens;
    }
    for (const secret of secrets) {
      const token = entries.get(this.nameId(secret));
      if (token) tokens.set(secret, token);
    }
    return tokens;
  }

  /**
   * The marker a set of secrets carries once it is current, from the fingerprints already known
   * (`fingerprintOf`, no fetch); undefined while one is not known, or for no names. DSO volumes
   * and `dso ls` ask it; a wave builds its own from SecretVersions.fingerprintsOf.
   */
  known(names: readonly string[], fingerprintOf: (name: string) => string | undefined): string | undefined {
    const fingerprints: Record<string, string> = {};
    for (const name of names) {
      const fp = fingerprintOf(name);
      if (!fp) return undefined;
      fingerprints[name] = fp;
    }
    return names.length ? this.marker(fingerprints) : undefined;
  }

  /** True when the marker says exactly these secrets at exactly these fingerprints. */
  matches(marker: string | undefined, fingerprints: Readonly<Record<string, string>>): boolean {
    return marker !== undefined && marker === this.marker(fingerprints);
  }
}
