/**
 * The `aws` provider: AWS Secrets Manager through @aws-sdk/client-secrets-manager. Polling reads
 * metadata only (ListSecrets, ~1 call per 100 secrets); values are read in batches of 20 when a
 * fingerprint changed. Config: `region`, `auth.method` (iam_role | env | access_key),
 * `auth.params.{access_key_id,secret_access_key,session_token}`, `config.endpoint`,
 * `config.max_attempts`. See docs/providers/aws.md.
 */
import { registerSecretValue } from "../../src/log/redact.ts";
import type { ConfigureParams, ProviderClient, ProviderContext, ProviderFactory } from "../types.ts";
import { createSecretsManagerClient } from "./client.ts";
import { isAccessDenied, toProviderError } from "./errors.ts";
import { createSqsEventQueue } from "./events.ts";
import { MetadataReader } from "./metadata.ts";
import { resolveAwsSettings } from "./settings.ts";
import { ValueReader } from "./values.ts";

export const awsProvider: ProviderFactory = {
  type: "aws",
  async create(params: ConfigureParams, ctx: ProviderContext): Promise<ProviderClient> {
    const settings = resolveAwsSettings(params, ctx.env);
    // A stray log line (an SDK error echoing its input) must not carry the key either.
    if (settings.credentials) {
      registerSecretValue(settings.credentials.secretAccessKey);
      if (settings.credentials.sessionToken) registerSecretValue(settings.credentials.sessionToken);
    }
    const sdk = createSecretsManagerClient(settings);
    const metadata = new MetadataReader(sdk, params.name, ctx.log);
    const values = new ValueReader(sdk, params.name, ctx.log);
    const events = params.events ? createSqsEventQueue(settings, params.events.queue, params.name) : undefined;

    return {
      async fingerprint(refs, signal) {
        const before = { ...metadata.calls };
        const items = await metadata.fingerprint(refs, signal);
        ctx.log.debug("fingerprint poll", {
          refs: refs.length,
          listSecretsCalls: metadata.calls.ListSecrets - before.ListSecrets,
          describeSecretCalls: metadata.calls.DescribeSecret - before.DescribeSecret,
        });
        return items;
      },
      fetch: (refs, signal) => values.fetch(refs, signal),
      async health(signal) {
        try {
          await metadata.probe(signal);
          return { ok: true };
        } catch (error) {
          // Credentials work but the policy lacks ListSecrets: polling still works, more slowly.
          if (isAccessDenied(error)) return { ok: true, message: "ListSecrets not allowed: polling uses one DescribeSecret per secret" };
          return { ok: false, message: toProviderError(error, params.name).message };
        }
      },
      ...(events ? { events } : {}),
      async close() {
        sdk.destroy();
        events?.destroy();
      },
    };
  },
};
