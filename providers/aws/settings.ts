/**
 * Turns `providers.<name>` (Go DSO compatible: `region`, `auth.method`, `auth.params`, `config.*`)
 * into the settings of one Secrets Manager client. Every unknown key is refused by its full path.
 */
import { assertProviderBlock, parseBlock } from "../block-check.ts";
import { ProviderError } from "../errors.ts";
import { awsConfigSchema, awsDescriptor } from "./descriptor.ts";
import type { ConfigureParams } from "../types.ts";

export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsSettings {
  region: string;
  endpoint?: string;
  /** Absent: the SDK's default credential chain (profile, web identity, container, IMDS). */
  credentials?: StaticCredentials;
  /** Attempts per API call, first try included; the SDK backs off between them. */
  maxAttempts: number;
}

/** Enough retries to ride out a throttling burst (about 1 s, 2 s, 4 s of jittered backoff), bounded. */
export const DEFAULT_MAX_ATTEMPTS = 4;
const REGION_PATTERN = /^[a-z]{2}(-[a-z0-9]+){2,3}$/;

function invalid(message: string): ProviderError {
  return new ProviderError("CONFIG_INVALID", message);
}

/** Keys from auth.params win over the agent's AWS_* variables; either must be complete. */
function staticCredentials(params: ConfigureParams): StaticCredentials | undefined {
  const auth = params.auth?.params ?? {};
  const creds = params.credentials ?? {};
  const accessKeyId = auth.access_key_id ?? creds.AWS_ACCESS_KEY_ID;
  const secretAccessKey = auth.secret_access_key ?? creds.AWS_SECRET_ACCESS_KEY;
  const sessionToken = auth.session_token ?? (auth.access_key_id ? undefined : creds.AWS_SESSION_TOKEN);
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey) {
    const missing = accessKeyId ? "secret_access_key" : "access_key_id";
    throw invalid(`providers.${params.name}.auth.params.${missing}: required with the other half of the access key (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the agent)`);
  }
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

export function resolveAwsSettings(params: ConfigureParams, env: Record<string, string | undefined>): AwsSettings {
  const at = `providers.${params.name}`;
  assertProviderBlock(awsDescriptor, params.name, params);
  if (params.auth?.params?.role_arn !== undefined) {
    throw invalid(
      `${at}.auth.params.role_arn: assuming a role is not supported by the aws provider; use a profile with role_arn (AWS_PROFILE, AWS_CONFIG_FILE) or web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)`,
    );
  }
  // auth.method is one of the descriptor's (assertProviderBlock).
  const method = params.auth?.method;
  const region = params.region || env.AWS_REGION || env.AWS_DEFAULT_REGION;
  if (!region) throw invalid(`${at}.region: required (or set AWS_REGION for the agent)`);
  if (!REGION_PATTERN.test(region)) throw invalid(`${at}.region: "${region.slice(0, 40)}" is not an AWS region name`);
  const credentials = staticCredentials(params);
  if (method === "access_key" && !credentials) {
    throw invalid(`${at}.auth.params.access_key_id: auth.method access_key needs an access key (auth.params or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the agent)`);
  }
  const { endpoint, max_attempts } = parseBlock(awsConfigSchema, `${at}.config`, params.config);
  return {
    region,
    ...(endpoint ? { endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    maxAttempts: max_attempts ?? DEFAULT_MAX_ATTEMPTS,
  };
}
