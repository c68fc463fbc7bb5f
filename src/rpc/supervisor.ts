/**
 * The provider supervisor's public face, split along hashicorp/go-plugin's lines:
 * child-lifecycle.ts (process lifecycle and backoff), rpc-channel.ts (the RPC channel),
 * stderr-relay.ts (the child's stderr), provider-connection.ts (one started child made of the
 * three), provider-process.ts (the long-lived, restarted provider process) and fetch-child.ts
 * (the short-lived child serving values, made of the same parts).
 */
export { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffDelay, SHUTDOWN_GRACE_MS } from "./child-lifecycle.ts";
export { ProviderCallError } from "./rpc-channel.ts";
export { STDERR_LINES_PER_SECOND } from "./stderr-relay.ts";
export {
  CALL_TIMEOUT_MS,
  ProviderProcess,
  START_TIMEOUT_MS,
  type ProviderObserver,
  type ProviderProcessOptions,
  type ProviderState,
  type ProviderStatus,
} from "./provider-process.ts";
