/**
 * Fingerprints made from values (the file provider, Vault KV v1) are keyed MACs, never bare hashes:
 * a bare SHA-256 in `dso ls`, a log line or a directory name lets anyone test guesses of a weak
 * secret offline (`printf guess | sha256sum`). The key comes from the agent in `configure`
 * (`fingerprintKey`, per host and per provider instance, see docs/security.md); a provider that
 * needs one refuses to start without it rather than fall back to a guessable hash.
 */
import { createHmac } from "node:crypto";
import { ProviderError } from "./errors.ts";
import type { ConfigureParams } from "./types.ts";

export const VALUE_FINGERPRINT_PREFIX = "hmac-sha256:";

/** HMAC-SHA-256 of a value's bytes (or UTF-8 text) under the instance's key, as `hmac-sha256:<hex>`. */
export type ValueFingerprint = (value: Uint8Array | string) => string;

export function valueFingerprinter(params: Pick<ConfigureParams, "name" | "fingerprintKey">): ValueFingerprint {
  if (!params.fingerprintKey) {
    throw new ProviderError(
      "CONFIG_INVALID",
      `providers.${params.name}: the agent sent no fingerprintKey, and this provider fingerprints values (an unkeyed hash would let a value be guessed); run the agent and its providers from one dso binary`,
    );
  }
  const key = Buffer.from(params.fingerprintKey, "hex");
  return (value) => `${VALUE_FINGERPRINT_PREFIX}${createHmac("sha256", key).update(value).digest("hex")}`;
}
