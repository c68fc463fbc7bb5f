/**
 * The vault provider as the agent side knows it (see ProviderDescriptor), with the rules of its
 * config values, which `dso config validate` and the provider (config.ts) share.
 */
import { isIP } from "node:net";
import * as v from "valibot";
import { booleanValue, configValue, oneOfValue, urlValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1";
  return false;
}

/** The server's address, normalised to origin and path without a trailing slash (also VAULT_ADDR). */
export const vaultAddress = v.pipe(
  urlValue("is not a URL (expected https://host:8200)", (url) => {
    if (url.username || url.password) return "must not carry credentials in the URL";
    if (url.protocol !== "https:" && url.protocol !== "http:") return `unsupported scheme ${url.protocol}`;
    // Plain http to another host sends the token in clear: a warning (vaultConfigWarnings), not a
    // refusal, so the Go DSO's examples (`http://vault:8200` on a compose network) keep loading.
    if (url.search || url.hash) return "must not have a query or fragment";
    return undefined;
  }),
  v.transform((url) => `${url.origin}${url.pathname.replace(/\/+$/, "")}`),
);

/** Empty (e.g. `address: ${VAULT_ADDR:-}`) means unset: VAULT_ADDR or the default, as the Go DSO reads it. */
const vaultAddressOrEmpty = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    if (dataset.value === "") return undefined;
    const parsed = v.safeParse(vaultAddress, dataset.value);
    if (parsed.success) return parsed.output;
    addIssue({ message: parsed.issues[0].message });
    return NEVER;
  }),
);

/** A mount path such as `secret` or `team/kv`, without leading or trailing slashes. */
export const vaultMount = configValue<string>((raw) => {
  const mount = raw.replace(/^\/+|\/+$/g, "");
  if (!mount || mount.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) return { problem: "must be a mount path such as secret or team/kv" };
  return { value: mount };
});

/** "true"/"false", "1"/"0", any case (also VAULT_SKIP_VERIFY, as the Vault CLI reads it). */
export const vaultBoolean = booleanValue(true);

export const vaultConfigSchema = v.object({
  address: v.optional(vaultAddressOrEmpty),
  token: v.optional(v.string()),
  mount: v.optional(vaultMount),
  kv_version: v.optional(v.pipe(oneOfValue(["1", "2"]), v.transform((raw) => (raw === "1" ? 1 : 2) as 1 | 2))),
  namespace: v.optional(v.string()),
  ca_cert: v.optional(v.string()),
  tls_skip_verify: v.optional(vaultBoolean),
});

export const vaultAuthParamsSchema = v.object({
  role_id: v.optional(v.string()),
  secret_id: v.optional(v.string()),
  mount: v.optional(vaultMount),
});

/** `config.address` over plain http to a host other than this one: the token travels in clear. */
export function vaultConfigWarnings(config: Readonly<Record<string, string>>): Array<{ key: string; message: string }> {
  const raw = config.address;
  if (!raw) return [];
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return [];
  }
  if (url.protocol !== "http:" || isLoopback(url.hostname)) return [];
  return [{ key: "address", message: "plain http to a non-loopback host sends the Vault token in clear; use https" }];
}

export const vaultDescriptor: ProviderDescriptor = {
  type: "vault",
  config: vaultConfigSchema,
  authParams: vaultAuthParamsSchema,
  authMethods: ["token", "approle"],
  env: ["VAULT_ADDR", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_SKIP_VERIFY"],
  credentials: ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"],
  configWarnings: vaultConfigWarnings,
  // Leases die with the token that created them: fetch processes use the long-lived one's.
  lendsSession: true,
  load: () => import("./index.ts").then((m) => m.vaultProvider),
};
