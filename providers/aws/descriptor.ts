/**
 * The aws provider as the agent side knows it (see ProviderDescriptor), with the rules of its
 * config values, which `dso config validate` and the provider (settings.ts) share.
 */
import * as v from "valibot";
import { configValue, integerValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

/** Attempts per API call, first try included; more than this only delays a real failure. */
export const MAX_MAX_ATTEMPTS = 10;

export const awsConfigSchema = v.object({
  /** Kept as written: the SDK takes the endpoint string. */
  endpoint: v.optional(
    configValue<string>((raw) => {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return { problem: "not a URL" };
      }
      if (url.protocol !== "https:" && url.protocol !== "http:") return { problem: "must be an http(s) URL" };
      if (url.username || url.password) return { problem: "must not carry credentials" };
      return { value: raw };
    }),
  ),
  max_attempts: v.optional(integerValue(1, MAX_MAX_ATTEMPTS)),
});

export const awsAuthParamsSchema = v.object({
  access_key_id: v.optional(v.string()),
  secret_access_key: v.optional(v.string()),
  session_token: v.optional(v.string()),
  role_arn: v.optional(v.string()),
});

export const awsDescriptor: ProviderDescriptor = {
  type: "aws",
  config: awsConfigSchema,
  authParams: awsAuthParamsSchema,
  authMethods: ["iam_role", "env", "access_key"],
  env: [
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_USE_FIPS_ENDPOINT",
  ],
  credentials: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"],
  load: () => import("./index.ts").then((m) => m.awsProvider),
};
