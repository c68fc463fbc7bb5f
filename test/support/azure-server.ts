// Local Azure Key Vault (secrets data plane, REST over HTTPS) plus a tiny Microsoft Entra ID token
// endpoint on the same origin, for driving the real @azure/keyvault-secrets and @azure/identity.
//
// Key Vault: GET /secrets, /secrets/{name}, /secrets/{name}/versions, /secrets/{name}/{version},
// each needing ?api-version=; lists are paged with `maxresults` (1..25) and `nextLink`.
// Challenge auth as the service does it: a request without a valid bearer token gets
// 401 + WWW-Authenticate: Bearer authorization="<url>/<tenant>", resource="<resource>".
// @azure/keyvault-common turns `resource` into the scope "<resource>/.default" and takes the tenant
// from the authorization URL path. Because the vault is 127.0.0.1 and not *.vault.azure.net, the
// SecretClient needs `disableChallengeResourceVerification: true`.
//
// Entra ID: GET /{tenant}/v2.0/.well-known/openid-configuration, then POST
// /{tenant}/oauth2/v2.0/token (client_credentials) — what MSAL fetches. ClientSecretCredential needs
// `authorityHost: server.authorityHost` AND `disableInstanceDiscovery: true`: for an authority it
// does not know, MSAL asks https://login.microsoftonline.com/common/discovery/instance (a fixed
// host, not the authority), which is unreachable here and fails with endpoints_resolution_error.
//
// TLS trust under Bun 1.4.4: NODE_EXTRA_CA_CERTS is read only at process start, so in-process tests
// pass the certificate to the SDK pipelines instead: `tlsOptions: { ca: server.certPem }` in both the
// SecretClient and the credential options (core-rest-pipeline builds an https.Agent with that CA).
// A child process (e.g. `dso provider azure`) can instead get NODE_EXTRA_CA_CERTS=<certPath> in its env.
//
// Azure Storage (scope https://storage.azure.com/.default): the token endpoint issues a JWT-shaped
// token (unsigned) with the claims Azure Storage checks (aud https://storage.azure.com, iss
// https://sts.windows.net/<tenant>/, nbf, exp), which Azurite accepts with `--oauth basic` over HTTPS.
import { createTestCertificate, type TestCertificate } from "./tls-cert.ts";

export interface AzureSecretVersion {
  version: string;
  value: string;
  enabled: boolean;
  contentType?: string;
  tags?: Record<string, string>;
  created: Date;
  updated: Date;
}

export interface AzureServerState {
  /** Secret name → versions, oldest first; the last one is the current version. */
  secrets: Map<string, AzureSecretVersion[]>;
  /** getSecret, listVersions, listSecrets (GET /secrets, the only properties-only read the REST
   *  API has), challenge (401s sent), token, discovery, throttled. */
  calls: Record<string, number>;
  /** Bearer tokens the vault accepts; the token endpoint adds each token it issues. */
  acceptedTokens: Set<string>;
  /** Adds a new current version and returns its version id (32 hex chars, as Key Vault's). */
  setSecret(name: string, value: string, extra?: { contentType?: string; tags?: Record<string, string>; enabled?: boolean }): string;
  deleteSecret(name: string): void;
  /** The next `count` vault requests get 429 with Retry-After (seconds). */
  throttleNext(count: number, retryAfterSeconds?: number): void;
  /** While true every vault request gets 401 (with the challenge), whatever token it carries. */
  failAuth: boolean;
  delayMs: number;
}

export interface AzureServerOptions {
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** A bearer token accepted from the start (for a custom TokenCredential). */
  accessToken?: string;
  resource?: string;
  /** Reuse a certificate; by default one is generated and removed on stop(). */
  certificate?: TestCertificate;
}

export interface AzureServer {
  url: string;
  /** The Entra ID authority host to give @azure/identity (same origin as the vault). */
  authorityHost: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  accessToken: string;
  certPem: string;
  certPath: string;
  /** The certificate's key (for another local TLS server, e.g. Azurite with `--key`). */
  keyPath: string;
  state: AzureServerState;
  stop(): Promise<void>;
}

const PAGE_MAX = 25;
/** Azure Storage's resource id; its tokens are v1 (iss sts.windows.net), as Entra issues them. */
export const STORAGE_RESOURCE = "https://storage.azure.com";
const TOKEN_LIFETIME_SECONDS = 3599;

class HttpError extends Error {
  constructor(readonly status: number, readonly body: unknown, readonly headers: Record<string, string> = {}) {
    super(`HTTP ${status}`);
  }
}
const kvError = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  new HttpError(status, { error: { code, message } }, headers);

const epoch = (d: Date) => Math.floor(d.getTime() / 1000);

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export async function startAzureServer(opts: AzureServerOptions = {}): Promise<AzureServer> {
  const tenantId = opts.tenantId ?? "dso-test-tenant";
  const clientId = opts.clientId ?? "00000000-0000-0000-0000-00000000d505";
  const clientSecret = opts.clientSecret ?? "dso-test-client-secret";
  const accessToken = opts.accessToken ?? "dso-test-kv-token";
  const resource = opts.resource ?? "https://vault.azure.net";
  const cert = opts.certificate ?? createTestCertificate();
  let throttle = { remaining: 0, retryAfter: 1 };
  let baseUrl = "";

  const state: AzureServerState = {
    secrets: new Map(),
    calls: {},
    acceptedTokens: new Set([accessToken]),
    failAuth: false,
    delayMs: 0,
    setSecret(name, value, extra = {}) {
      const now = new Date();
      const version = crypto.randomUUID().replaceAll("-", "");
      const versions = state.secrets.get(name) ?? [];
      versions.push({ version, value, enabled: extra.enabled ?? true, contentType: extra.contentType, tags: extra.tags, created: now, updated: now });
      state.secrets.set(name, versions);
      return version;
    },
    deleteSecret(name) { state.secrets.delete(name); },
    throttleNext(count, retryAfterSeconds = 1) { throttle = { remaining: count, retryAfter: retryAfterSeconds }; },
  };
  const count = (op: string) => { state.calls[op] = (state.calls[op] ?? 0) + 1; };

  function attributes(v: AzureSecretVersion) {
    return { enabled: v.enabled, created: epoch(v.created), updated: epoch(v.updated), recoveryLevel: "Recoverable+Purgeable", recoverableDays: 90 };
  }
  function item(name: string, v: AzureSecretVersion, withVersion: boolean) {
    return {
      id: `${baseUrl}/secrets/${name}${withVersion ? `/${v.version}` : ""}`,
      attributes: attributes(v),
      ...(v.contentType !== undefined && { contentType: v.contentType }),
      ...(v.tags !== undefined && { tags: v.tags }),
    };
  }
  function versionsOf(name: string): AzureSecretVersion[] {
    const versions = state.secrets.get(name);
    if (!versions?.length) throw kvError(404, "SecretNotFound", `A secret with (name/id) ${name} was not found in this key vault.`);
    return versions;
  }
  function page<T>(url: URL, items: T[], path: string) {
    const size = Number(url.searchParams.get("maxresults") ?? PAGE_MAX);
    if (!Number.isInteger(size) || size < 1 || size > PAGE_MAX) throw kvError(400, "BadParameter", `maxresults must be between 1 and ${PAGE_MAX}.`);
    const start = Number(url.searchParams.get("$skiptoken") ?? 0);
    const end = start + size;
    const apiVersion = url.searchParams.get("api-version");
    const nextLink = end < items.length ? `${baseUrl}${path}?api-version=${apiVersion}&$skiptoken=${end}&maxresults=${size}` : null;
    return { value: items.slice(start, end), nextLink };
  }

  function checkBearer(req: Request): void {
    const token = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    if (token && state.acceptedTokens.has(token) && !state.failAuth) return;
    count("challenge");
    const challenge = `Bearer authorization="${baseUrl}/${tenantId}", resource="${resource}"`;
    throw kvError(401, "Unauthorized", token ? "AKV10032: Invalid issuer or token." : "AKV10000: Request is missing a Bearer or PoP token.", { "www-authenticate": challenge });
  }

  async function handleVault(req: Request, url: URL): Promise<unknown> {
    if (state.delayMs > 0) await abortableSleep(state.delayMs, req.signal);
    if (throttle.remaining > 0) {
      throttle.remaining--;
      count("throttled");
      throw kvError(429, "Throttled", "Request was not processed because too many requests were received.", { "retry-after": String(throttle.retryAfter) });
    }
    checkBearer(req);
    if (!url.searchParams.get("api-version")) throw kvError(400, "BadParameter", "The 'api-version' query parameter is missing.");
    if (req.method !== "GET") throw kvError(405, "MethodNotAllowed", "Only reads are emulated.");
    const [, , name, version] = url.pathname.split("/");
    if (!name) {
      count("listSecrets");
      const items = [...state.secrets].filter(([, vs]) => vs.length > 0).map(([n, vs]) => item(n, vs.at(-1)!, false));
      return page(url, items, "/secrets");
    }
    const versions = versionsOf(name);
    if (version === "versions") {
      count("listVersions");
      return page(url, versions.map((v) => item(name, v, true)), `/secrets/${name}/versions`);
    }
    count("getSecret");
    const v = version ? versions.find((x) => x.version === version) : versions.at(-1);
    if (!v) throw kvError(404, "SecretNotFound", `A secret with (name/id) ${name}/${version} was not found in this key vault.`);
    if (!v.enabled) throw new HttpError(403, { error: { code: "Forbidden", message: "Operation get is not allowed on a disabled secret.", innererror: { code: "SecretDisabled" } } });
    return { value: v.value, ...item(name, v, true) };
  }

  function openidConfiguration(tenant: string) {
    const base = `${baseUrl}/${tenant}`;
    return {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      issuer: `${base}/v2.0`,
      jwks_uri: `${baseUrl}/${tenant}/discovery/v2.0/keys`,
      token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
      response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      tenant_region_scope: null,
      cloud_instance_name: "dso.test",
    };
  }

  async function issueToken(req: Request, tenant: string): Promise<unknown> {
    count("token");
    const aadError = (status: number, error: string, description: string) => new HttpError(status, { error, error_description: description, error_codes: [], timestamp: new Date().toISOString() });
    if (tenant !== tenantId) throw aadError(400, "invalid_request", `AADSTS90002: Tenant '${tenant}' not found.`);
    const form = new URLSearchParams(await req.text());
    if (form.get("grant_type") !== "client_credentials") throw aadError(400, "unsupported_grant_type", "AADSTS70003: Only client_credentials is emulated.");
    if (form.get("client_id") !== clientId) throw aadError(400, "unauthorized_client", `AADSTS700016: Application with identifier '${form.get("client_id")}' was not found.`);
    if (form.get("client_secret") !== clientSecret) throw aadError(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.");
    const scopes = (form.get("scope") ?? "").split(" ");
    if (scopes.includes(`${STORAGE_RESOURCE}/.default`)) {
      count("token_storage");
      return { token_type: "Bearer", expires_in: TOKEN_LIFETIME_SECONDS, ext_expires_in: TOKEN_LIFETIME_SECONDS, access_token: storageToken(tenant) };
    }
    if (!scopes.includes(`${resource}/.default`)) throw aadError(400, "invalid_scope", "AADSTS70011: The provided value for the input parameter 'scope' is not valid.");
    const token = `aad-${crypto.randomUUID()}`;
    state.acceptedTokens.add(token);
    return { token_type: "Bearer", expires_in: TOKEN_LIFETIME_SECONDS, ext_expires_in: TOKEN_LIFETIME_SECONDS, access_token: token };
  }

  /** A JWT for Azure Storage with the claims Azurite's `--oauth basic` checks (it does not check the signature). */
  function storageToken(tenant: string): string {
    const now = Math.floor(Date.now() / 1000);
    const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const claims = { aud: STORAGE_RESOURCE, iss: `https://sts.windows.net/${tenant}/`, iat: now, nbf: now - 60, exp: now + TOKEN_LIFETIME_SECONDS, appid: clientId, oid: crypto.randomUUID(), tid: tenant, ver: "1.0" };
    return `${part({ typ: "JWT", alg: "RS256" })}.${part(claims)}.${Buffer.from("dso-test-unsigned").toString("base64url")}`;
  }

  async function route(req: Request): Promise<unknown> {
    const url = new URL(req.url);
    const segs = url.pathname.split("/").filter(Boolean);
    if (segs[0] === "secrets") return handleVault(req, url);
    if (segs.length === 4 && segs.slice(1).join("/") === "oauth2/v2.0/token" && req.method === "POST") return issueToken(req, segs[0]!);
    if (segs.slice(1).join("/") === "v2.0/.well-known/openid-configuration") {
      count("discovery");
      return openidConfiguration(segs[0]!);
    }
    throw kvError(404, "NotFound", `No route for ${req.method} ${url.pathname}`);
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    tls: { cert: cert.certPem, key: cert.keyPem },
    async fetch(req) {
      try {
        return Response.json(await route(req));
      } catch (e) {
        if (e instanceof HttpError) return Response.json(e.body, { status: e.status, headers: e.headers });
        return Response.json({ error: { code: "InternalError", message: String(e) } }, { status: 500 });
      }
    },
  });
  baseUrl = `https://127.0.0.1:${server.port}`;

  return {
    url: baseUrl,
    authorityHost: baseUrl,
    tenantId,
    clientId,
    clientSecret,
    accessToken,
    certPem: cert.certPem,
    certPath: cert.certPath,
    keyPath: cert.keyPath,
    state,
    stop: async () => {
      await server.stop(true);
      if (!opts.certificate) cert.remove();
    },
  };
}
