/**
 * Bounds how long the SDK may wait on Key Vault throttling. The SDK's retry policy honours
 * Retry-After on 429/503 but without an upper limit, so a server asking for minutes would
 * outlive the agent's call timeout. This policy sits below the retry policy (per retry), adds up
 * the waits asked for one request, and once they would exceed the budget it stops retrying with
 * PROVIDER_THROTTLED carrying the server's Retry-After for the agent to honour.
 */
import type { SecretClientOptions } from "@azure/keyvault-secrets";
import { ProviderError } from "../errors.ts";
import { retryAfterMs } from "./errors.ts";

type AdditionalPolicy = NonNullable<SecretClientOptions["additionalPolicies"]>[number];

/** Total Retry-After waited per request; stays well inside the agent's 30 s call timeout. */
export const THROTTLE_BUDGET_MS = 10_000;
/** Retries per request for throttling and 5xx; each is still bounded by the budget above. */
export const MAX_RETRIES = 4;

export function throttleBudgetPolicy(instance: string, budgetMs = THROTTLE_BUDGET_MS): AdditionalPolicy {
  const waited = new WeakMap<object, number>();
  return {
    position: "perRetry",
    policy: {
      name: "dsoThrottleBudget",
      async sendRequest(request, next) {
        const response = await next(request);
        if (response.status !== 429 && response.status !== 503) return response;
        const wait = retryAfterMs(response.headers);
        if (wait === undefined) return response;
        const total = (waited.get(request) ?? 0) + wait;
        if (total > budgetMs) {
          throw new ProviderError(
            "PROVIDER_THROTTLED",
            `provider ${instance} (azure): Key Vault is throttling requests; retry in ${Math.ceil(wait / 1000)} s`,
            { retryAfterMs: wait },
          );
        }
        waited.set(request, total);
        return response;
      },
    },
  };
}
