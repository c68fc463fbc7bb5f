/**
 * The one place that builds the Secrets Manager client. Retries are the SDK's standard mode
 * (jittered exponential backoff, longer for throttling, honouring Retry-After) with a bounded
 * number of attempts; every request has connect and response timeouts so a dead endpoint cannot
 * hang a poll.
 */
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { AwsSettings } from "./settings.ts";

export const CONNECT_TIMEOUT_MS = 5_000;
export const REQUEST_TIMEOUT_MS = 15_000;

export function createSecretsManagerClient(settings: AwsSettings): SecretsManagerClient {
  return new SecretsManagerClient({
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    maxAttempts: settings.maxAttempts,
    retryMode: "standard",
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  });
}
