/**
 * What a provider process inherits from the agent's environment. Nothing secret travels through
 * env: variables that hold credentials are read here and sent in `configure` instead, and every
 * other variable is dropped unless it is common or on the provider's allow-list (its descriptor,
 * providers/<type>/descriptor.ts).
 */
import { descriptorOf } from "../../providers/registry.ts";

const COMMON = [
  "PATH", "HOME", "TZ", "LANG", "LC_ALL", "TMPDIR",
  "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
  "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
];

function pick(env: Record<string, string | undefined>, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of keys) {
    const value = env[key];
    if (value !== undefined && value !== "") out[key] = value;
  }
  return out;
}

export function providerChildEnv(type: string, env: Record<string, string | undefined>): Record<string, string> {
  return pick(env, [...COMMON, ...(descriptorOf(type)?.env ?? [])]);
}

export function providerCredentials(type: string, env: Record<string, string | undefined>): Record<string, string> {
  return pick(env, descriptorOf(type)?.credentials ?? []);
}
