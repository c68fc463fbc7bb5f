import type Dockerode from "dockerode";
import type { SecretStore } from "../../src/agent/secret-store.ts";
import type { DsoConfig } from "../../src/config/types.ts";
import { Reloader, type SecretFetcher } from "../../src/reloader/reloader.ts";

export const quietLog = { debug() {}, info() {}, warn() {}, error() {} };

/** A Reloader for tests that only fetch values: delivering through it is a test bug. */
export function fetchOnlyReloader(opts: { store: SecretStore; provider: SecretFetcher; config: DsoConfig; docker?: Dockerode }): Reloader {
  return new Reloader({
    docker: opts.docker ?? ({} as Dockerode),
    store: opts.store,
    provider: () => opts.provider,
    deliver: async () => {
      throw new Error("this test reloader does not deliver");
    },
    log: quietLog,
    config: () => opts.config,
  });
}
