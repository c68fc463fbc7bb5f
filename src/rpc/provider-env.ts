/**
 * What a provider process inherits from the agent's environment. Nothing secret travels through
 * env: variables that hold credentials are read here and sent in `configure` instead, and every
 * other variable is dropped unless it is on the allow-list for that provider type.
 */
const COMMON = [
  "PATH", "HOME", "TZ", "LANG", "LC_ALL", "TMPDIR",
  "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
  "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
];

const BY_TYPE: Record<string, string[]> = {
  aws: [
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_USE_FIPS_ENDPOINT",
  ],
  azure: [
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_ADDITIONALLY_ALLOWED_TENANTS", "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
  ],
  vault: ["VAULT_ADDR", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_SKIP_VERIFY"],
  file: [],
};

/** Variables that hold credentials: passed to the provider in `configure`, never in its env. */
const CREDENTIALS: Record<string, string[]> = {
  aws: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"],
  azure: ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "IDENTITY_HEADER", "MSI_SECRET"],
  vault: ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"],
  file: [],
};

function pick(env: Record<string, string | undefined>, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of keys) {
    const value = env[key];
    if (value !== undefined && value !== "") out[key] = value;
  }
  return out;
}

export function providerChildEnv(type: string, env: Record<string, string | undefined>): Record<string, string> {
  return pick(env, [...COMMON, ...(BY_TYPE[type] ?? [])]);
}

export function providerCredentials(type: string, env: Record<string, string | undefined>): Record<string, string> {
  return pick(env, CREDENTIALS[type] ?? []);
}
