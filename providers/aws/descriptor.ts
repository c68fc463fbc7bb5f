/** The aws provider as the agent side knows it (see ProviderDescriptor). */
import type { ProviderDescriptor } from "../types.ts";

export const awsDescriptor: ProviderDescriptor = {
  type: "aws",
  configKeys: ["endpoint", "max_attempts"],
  authParamKeys: ["access_key_id", "secret_access_key", "session_token", "role_arn"],
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
