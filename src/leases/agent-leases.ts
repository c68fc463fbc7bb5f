/**
 * The lease keeper as the agent runs it: records kept on the DSO volume root's tmpfs (beside the
 * host key), lease fingerprints keyed by the host key, calls through each provider's processes,
 * every step logged and counted, and trouble raised through the agent's alarm hook.
 */
import { createHmac } from "node:crypto";
import type { Registry } from "prom-client";
import type { LeaseSpec } from "../config/lease-spec.ts";
import type { DsoConfig, SecretSpec } from "../config/types.ts";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { openLeaseBook } from "./lease-book.ts";
import { LeaseKeeper, type LeaseEvents, type LeaseOperation } from "./lease-keeper.ts";
import { leaseMetrics } from "./lease-metrics.ts";
import { providerLeaseBackend, type LeaseCapableProvider } from "./provider-backend.ts";

export interface AgentLeaseOptions {
  config: () => DsoConfig;
  provider(name: string): LeaseCapableProvider | undefined;
  /** The RAM-backed directory the records are kept in. */
  dir: string;
  hostKey: Uint8Array;
  log: FieldLogger;
  registry?: Registry;
  onReplaceWanted(secrets: string[]): void;
  /** A failure that threatens a credential: audit event and notification. */
  alarm(p: { secret: string; consumer: string; provider: string; operation: LeaseOperation; error: unknown; secondsLeft: number }): void;
}

/** The keeper with the records an earlier agent left; `run()` it once the providers are set up. */
export async function startAgentLeases(options: AgentLeaseOptions): Promise<LeaseKeeper> {
  const book = await openLeaseBook(options.dir);
  if (!book.path) options.log.warn("no tmpfs for the lease records: they live in memory only, so an agent restart issues new credentials", { dir: options.dir });
  const spec = (name: string) => options.config().secrets.find((s): s is SecretSpec & { lease: LeaseSpec } => s.name === name && s.lease !== undefined);
  let keeper: LeaseKeeper | undefined;
  const counted = options.registry ? leaseMetrics(options.registry, () => keeper) : {};
  const log = options.log;
  const events: LeaseEvents = {
    issued: (r, replacement) => {
      log.info(replacement ? "issued a replacement credential" : "issued a credential", { secret: r.secret, consumer: r.consumer.slice(0, 12), expiresAt: new Date(r.expiresAtMs).toISOString() });
      counted.issued?.(r, replacement);
    },
    renewed: (r) => {
      log.debug("renewed a lease", { secret: r.secret, consumer: r.consumer.slice(0, 12), expiresAt: new Date(r.expiresAtMs).toISOString() });
      counted.renewed?.(r);
    },
    revoked: (r, reason) => {
      log.info("revoked a lease", { secret: r.secret, consumer: r.consumer.slice(0, 12), reason });
      counted.revoked?.(r, reason);
    },
    failed: (r, operation, error) => {
      log.warn(`lease ${operation} failed`, { secret: r.secret, consumer: r.consumer.slice(0, 12), error: describeError(error) });
      counted.failed?.(r, operation, error);
    },
    alarm: (r, operation, error, secondsLeft) => {
      log.error("a dynamic credential is at risk: its lease could not be kept", { secret: r.secret, consumer: r.consumer.slice(0, 12), operation, secondsLeft: Math.round(secondsLeft) });
      options.alarm({ secret: r.secret, consumer: r.consumer, provider: spec(r.secret)?.provider ?? "", operation, error, secondsLeft });
    },
  };
  keeper = new LeaseKeeper({
    spec,
    backend: (name) => {
      const provider = options.provider(name);
      return provider ? providerLeaseBackend(provider) : undefined;
    },
    book,
    fingerprint: (key) => createHmac("sha256", options.hostKey).update(`dso lease v1\0${key}`).digest("hex").slice(0, 32),
    onReplaceWanted: options.onReplaceWanted,
    events,
  });
  await keeper.load();
  return keeper;
}
