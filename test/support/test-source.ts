import type { SecretStore } from "../../src/secrets/store.ts";
import { SecretSource } from "../../src/secrets/source.ts";
import type { SecretFetcher } from "../../src/secrets/types.ts";

export const quietLog = { debug() {}, info() {}, warn() {}, error() {} };

/** The agent's value side over an in-process provider, for tests that only fetch. */
export function testSource(opts: { store: SecretStore; provider: SecretFetcher; onChanged?: (names: string[]) => void }): SecretSource {
  return new SecretSource({ store: opts.store, provider: () => opts.provider, log: quietLog, onChanged: opts.onChanged });
}
