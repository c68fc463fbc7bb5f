// Local Google Cloud Secret Manager (REST v1, the calls DSO makes) plus Google's OAuth token
// endpoint and the Compute Engine metadata server's token route, on one http origin.
//
// Secret Manager, as the public reference describes it:
//   GET /v1/projects/{p}/secrets?pageSize=                       list secrets (no values)
//   GET /v1/projects/{p}/secrets/{id}/versions/{N|latest}        a version's metadata: name
//       (projects/<number>/secrets/<id>/versions/<N>), createTime, state ENABLED|DISABLED|DESTROYED,
//       etag; `latest` is the newest *created* version, whatever its state
//   GET /v1/projects/{p}/secrets/{id}/versions?filter=state:ENABLED&pageSize=   newest first
//   GET /v1/projects/{p}/secrets/{id}/versions/{N|latest}:access  {name, payload: {data (base64),
//       dataCrc32c (int64 as a string)}}; a disabled or destroyed version is 400 FAILED_PRECONDITION
// Errors in Google's JSON shape {"error": {"code", "message", "status"}}: 401 UNAUTHENTICATED
// without a token this server issued, 403 PERMISSION_DENIED, 404 NOT_FOUND, 429
// RESOURCE_EXHAUSTED with Retry-After. Paths take the project id or its number.
//
// Pub/Sub (REST v1, the calls the change-event reader makes), sharing the token check:
//   GET  /v1/projects/{p}/subscriptions/{s}                     the subscription
//   POST /v1/projects/{p}/subscriptions/{s}:pull                {maxMessages (required, > 0),
//       returnImmediately?} → {receivedMessages: [{ackId, message: {data (base64), attributes,
//       messageId, publishTime}, deliveryAttempt}]} or {} ; without returnImmediately the server
//       holds the request until a message comes or PULL_HOLD_MS (a client that gave up gets none)
//   POST …:acknowledge {ackIds}; POST …:modifyAckDeadline {ackIds, ackDeadlineSeconds 0-600}
//   A pulled message is leased for the subscription's ack deadline, then delivered again; an
//   unknown or stale ackId is ignored (as Pub/Sub does); 400 INVALID_ARGUMENT on a bad body.
//
// Workload identity federation: GET /subject-token (needs `Metadata: true`, as Azure IMDS) serves
// the current subject token as JSON {access_token}; POST /sts/v1/token is Google's STS token
// exchange (grant_type token-exchange, audience, scope cloud-platform, requested_token_type
// access_token, subject_token_type jwt, a subject token this server issued) answering
// {access_token, issued_token_type, token_type, expires_in} or {error, error_description} 400;
// POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken (IAM Credentials) takes a
// federated token as bearer and {scope: [...], lifetime} and answers {accessToken, expireTime}.
//
// OAuth: POST /token (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=<JWT>)
// verifies the RS256 signature with the public half of the key it handed out (serviceAccountKey),
// and iss, aud (= this token_uri), iat/exp and the scope. Metadata server: GET
// /computeMetadata/v1/instance/service-accounts/default/token needs `Metadata-Flavor: Google`.
import { createPublicKey, createVerify, generateKeyPairSync, randomBytes } from "node:crypto";

export type GcpVersionState = "ENABLED" | "DISABLED" | "DESTROYED";

export interface GcpVersion {
  number: number;
  state: GcpVersionState;
  data?: Uint8Array;
  createTime: string;
}

export interface GcpServerState {
  /** `<project id>/<secret id>` → versions, oldest first. */
  secrets: Map<string, GcpVersion[]>;
  /** get (version metadata), list (enabled versions), listSecrets, access, token, metadataToken, unauthenticated, throttled. */
  calls: Record<string, number>;
  acceptedTokens: Set<string>;
  /** Every Secret Manager request's path (and query), in order. */
  requests: string[];
  /** Adds a version (ENABLED) and returns its number. */
  addVersion(secret: string, value: string | Uint8Array, project?: string): number;
  setState(secret: string, version: number, state: GcpVersionState, project?: string): void;
  deleteSecret(secret: string, project?: string): void;
  /** Secret ids whose every call gets 403 PERMISSION_DENIED; `accessDenied`: only :access (a viewer, not an accessor). */
  denied: Set<string>;
  accessDenied: Set<string>;
  /** The next `count` Secret Manager requests get 429 (with Retry-After when given, in seconds). */
  throttleNext(count: number, retryAfterSeconds?: number): void;
  /** The next `count` Secret Manager requests (whose path ends with `suffix`, if given) get 200 with `body` (default: not JSON). */
  malformedNext(count: number, body?: string, suffix?: string): void;
  /** Every Secret Manager request waits this long first. */
  delayMs: number;
  /** The token endpoint refuses every assertion (a deleted or disabled key). */
  revokeKey: boolean;
  pubsub: PubSubState;
  federation: FederationState;
}

export interface FederationState {
  /** Subject tokens the "identity provider" issued (accepted by the STS unless revoked). */
  subjectTokens: Set<string>;
  /** What the token served by GET /subject-token is. */
  urlSubjectToken: string;
  /** Access tokens by kind, and the kind each Secret Manager request presented, in order. */
  kinds: Map<string, "key" | "metadata" | "federated" | "impersonated">;
  used: string[];
  /** The last STS request's form and the last impersonation request's body and bearer kind, for tests. */
  lastExchange?: Record<string, string>;
  lastImpersonation?: { body: unknown; bearer: string | undefined };
  /** Issues a new subject token (an OIDC-JWT stand-in). */
  issueSubjectToken(): string;
}

export const FEDERATION_AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/dso-pool/providers/dso-oidc";
export const JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt";
export const IMPERSONATED_ACCOUNT = "dso-reader@dso-test-project.iam.gserviceaccount.com";

export interface PubSubMessage {
  id: string;
  data: string;
  attributes: Record<string, string>;
  publishTime: string;
  leasedUntil: number;
  ackId?: string;
  deliveries: number;
}

export interface PubSubState {
  /** `projects/<p>/subscriptions/<s>` → its messages, oldest first. */
  subscriptions: Map<string, { ackDeadlineSeconds: number; messages: PubSubMessage[] }>;
  /** Creates a pull subscription (as `gcloud pubsub subscriptions create`); returns its full name. */
  createSubscription(id: string, ackDeadlineSeconds?: number): string;
  /** Publishes a message (data as given, already base64, or an object sent as JSON). */
  publish(subscription: string, message: { data?: string | object; attributes: Record<string, string>; publishTime?: string }): void;
  /** What Secret Manager publishes for `eventType` on a secret of the test project. */
  notify(subscription: string, eventType: string, secret: string, version?: number): void;
  /** Messages not acknowledged yet (waiting or leased). */
  unacked(subscription: string): number;
  /** Subscription ids whose calls get 403 PERMISSION_DENIED. */
  denied: Set<string>;
  /** pull, acknowledge, modifyAckDeadline, get: request counts. */
  calls: Record<string, number>;
  /** Every Pub/Sub request gets 503 UNAVAILABLE (an outage). */
  unavailable: boolean;
}

/** How long a pull without returnImmediately is held when nothing comes (Pub/Sub's own bound is not published). */
export const PULL_HOLD_MS = 30_000;

export interface GcpServer {
  url: string;
  project: string;
  projectNumber: string;
  /** host:port, for GCE_METADATA_HOST. */
  metadataHost: string;
  /** A service-account JSON key whose token_uri is this server. */
  serviceAccountKey(): string;
  /** An external_account file whose token_url (and impersonation URL) is this server. */
  externalAccount(source: Record<string, unknown>, options?: { impersonate?: boolean }): string;
  /** The URL serving the subject token (credential_source.url; needs header `Metadata: true`). */
  subjectTokenUrl: string;
  state: GcpServerState;
  stop(): Promise<void>;
}

export const GCP_TEST_PROJECT = "dso-test-project";
const PROJECT_NUMBER = "123456789012";
const SERVICE_ACCOUNT = "dso-reader@dso-test-project.iam.gserviceaccount.com";
const SCOPE = "https://www.googleapis.com/auth/cloud-platform";
const MAX_PAYLOAD_BYTES = 64 * 1024;

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC32C_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const STATUS: Record<number, string> = { 400: "FAILED_PRECONDITION", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED" };

function googleError(code: number, message: string, status = STATUS[code] ?? "UNKNOWN", headers: Record<string, string> = {}): Response {
  return Response.json({ error: { code, message, status } }, { status: code, headers });
}

function verifyAssertion(assertion: string, publicPem: string, tokenUri: string): string | undefined {
  const parts = assertion.split(".");
  if (parts.length !== 3) return "not a JWT";
  const [h, c, sig] = parts as [string, string, string];
  let header: { alg?: string };
  let claims: { iss?: string; aud?: string; scope?: string; iat?: number; exp?: number };
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString());
    claims = JSON.parse(Buffer.from(c, "base64url").toString());
  } catch {
    return "undecodable JWT";
  }
  if (header.alg !== "RS256") return "alg must be RS256";
  if (!createVerify("RSA-SHA256").update(`${h}.${c}`).verify(createPublicKey(publicPem), Buffer.from(sig, "base64url"))) return "bad signature";
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== SERVICE_ACCOUNT) return "unknown issuer";
  if (claims.aud !== tokenUri) return "wrong audience";
  if (typeof claims.iat !== "number" || typeof claims.exp !== "number" || claims.exp <= now || claims.iat > now + 60 || claims.exp - claims.iat > 3600) return "bad iat/exp";
  if (!claims.scope?.split(" ").includes(SCOPE)) return "missing scope";
  return undefined;
}

export async function startGcpServer(): Promise<GcpServer> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  let throttle = { count: 0, retryAfter: undefined as number | undefined };
  let malformed = { count: 0, body: "<html>not json</html>", suffix: "" };
  const key = (secret: string, project = GCP_TEST_PROJECT) => `${project === PROJECT_NUMBER ? GCP_TEST_PROJECT : project}/${secret}`;
  const bump = (name: string) => void (state.calls[name] = (state.calls[name] ?? 0) + 1);
  let published = 0;

  const state: GcpServerState = {
    secrets: new Map(),
    calls: {},
    acceptedTokens: new Set(),
    requests: [],
    denied: new Set(),
    accessDenied: new Set(),
    delayMs: 0,
    revokeKey: false,
    addVersion(secret, value, project) {
      const data = typeof value === "string" ? new TextEncoder().encode(value) : new Uint8Array(value);
      if (data.length > MAX_PAYLOAD_BYTES) throw new Error("payload larger than 64 KiB");
      const versions = state.secrets.get(key(secret, project)) ?? [];
      const number = versions.length + 1;
      versions.push({ number, state: "ENABLED", data, createTime: new Date(Date.now() + number).toISOString() });
      state.secrets.set(key(secret, project), versions);
      return number;
    },
    setState(secret, version, next, project) {
      const v = state.secrets.get(key(secret, project))?.[version - 1];
      if (!v) throw new Error(`no version ${version} of ${secret}`);
      if (v.state === "DESTROYED") throw new Error("a destroyed version stays destroyed");
      v.state = next;
      if (next === "DESTROYED") v.data = undefined;
    },
    deleteSecret(secret, project) {
      state.secrets.delete(key(secret, project));
    },
    pubsub: {
      subscriptions: new Map(),
      denied: new Set(),
      calls: {},
      unavailable: false,
      createSubscription(id, ackDeadlineSeconds = 10) {
        const name = `projects/${GCP_TEST_PROJECT}/subscriptions/${id}`;
        state.pubsub.subscriptions.set(name, { ackDeadlineSeconds, messages: [] });
        return name;
      },
      publish(subscription, message) {
        const sub = state.pubsub.subscriptions.get(subscription);
        if (!sub) throw new Error(`no subscription ${subscription}`);
        const data = message.data === undefined ? "" : typeof message.data === "string" ? message.data : Buffer.from(JSON.stringify(message.data)).toString("base64");
        sub.messages.push({ id: String(++published), data, attributes: message.attributes, publishTime: message.publishTime ?? new Date().toISOString(), leasedUntil: 0, deliveries: 0 });
      },
      notify(subscription, eventType, secret, version) {
        const secretName = `projects/${PROJECT_NUMBER}/secrets/${secret}`;
        const resource = version === undefined ? { name: secretName, replication: { automatic: {} }, createTime: new Date().toISOString(), etag: '"1"' } : { name: `${secretName}/versions/${version}`, createTime: new Date().toISOString(), state: "ENABLED", etag: '"1"' };
        state.pubsub.publish(subscription, {
          data: resource,
          attributes: { eventType, secretId: secretName, dataFormat: "JSON_API_V1", ...(version === undefined ? {} : { versionId: `${secretName}/versions/${version}` }) },
        });
      },
      unacked: (subscription) => state.pubsub.subscriptions.get(subscription)?.messages.length ?? 0,
    },
    federation: {
      subjectTokens: new Set(),
      urlSubjectToken: "",
      kinds: new Map(),
      used: [],
      issueSubjectToken() {
        const token = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
        state.federation.subjectTokens.add(token);
        return token;
      },
    },
    throttleNext(count, retryAfterSeconds) {
      throttle = { count, retryAfter: retryAfterSeconds };
    },
    malformedNext(count, body = "<html>not json</html>", suffix = "") {
      malformed = { count, body, suffix };
    },
  };

  const versionJson = (project: string, secret: string, v: GcpVersion) => ({
    name: `projects/${PROJECT_NUMBER}/secrets/${secret}/versions/${v.number}`,
    createTime: v.createTime,
    state: v.state,
    ...(v.state === "DESTROYED" ? { destroyTime: v.createTime } : {}),
    replicationStatus: { automatic: {} },
    etag: `"${v.number}${v.state[0]}"`,
  });

  async function secretManager(req: Request, url: URL): Promise<Response> {
    state.requests.push(decodeURIComponent(url.pathname + url.search));
    if (state.delayMs) await Bun.sleep(state.delayMs);
    const token = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    if (token) state.federation.used.push(state.federation.kinds.get(token) ?? "unknown");
    if (!token || !state.acceptedTokens.has(token)) {
      bump("unauthenticated");
      return googleError(401, "Request had invalid authentication credentials.");
    }
    if (throttle.count > 0) {
      throttle.count--;
      bump("throttled");
      return googleError(429, "Quota exceeded for quota metric 'Read requests'.", "RESOURCE_EXHAUSTED", throttle.retryAfter !== undefined ? { "retry-after": String(throttle.retryAfter) } : {});
    }
    if (malformed.count > 0 && url.pathname.endsWith(malformed.suffix)) {
      malformed.count--;
      return new Response(malformed.body, { status: 200, headers: { "content-type": "application/json" } });
    }
    const path = decodeURIComponent(url.pathname);
    const list = /^\/v1\/projects\/([^/]+)\/secrets$/.exec(path);
    if (list) {
      bump("listSecrets");
      const size = Math.min(Number(url.searchParams.get("pageSize") ?? 25) || 25, 25000);
      const secrets = [...state.secrets.keys()].filter((k) => k.startsWith(`${key("", list[1])}`)).slice(0, size);
      return Response.json({ secrets: secrets.map((k) => ({ name: `projects/${PROJECT_NUMBER}/secrets/${k.split("/")[1]}` })), totalSize: secrets.length });
    }
    const m = /^\/v1\/projects\/([^/]+)\/secrets\/([^/]+)\/versions(?:\/([^/:]+)(:access)?)?$/.exec(path);
    if (!m || req.method !== "GET") return googleError(404, "Method not found.", "NOT_FOUND");
    const [, project, secret, which, access] = m as unknown as [string, string, string, string | undefined, string | undefined];
    bump(access ? "access" : which ? "get" : "list");
    if (state.denied.has(secret) || (access && state.accessDenied.has(secret))) {
      return googleError(403, `Permission 'secretmanager.versions.${access ? "access" : "get"}' denied for resource 'projects/${project}/secrets/${secret}' (or it may not exist).`);
    }
    const versions = state.secrets.get(key(secret, project));
    if (!versions?.length) return googleError(404, `Secret [projects/${PROJECT_NUMBER}/secrets/${secret}] not found or has no versions.`);
    if (which === undefined) {
      const filter = url.searchParams.get("filter");
      const wanted = filter?.startsWith("state:") ? filter.slice(6) : undefined;
      const size = Math.min(Number(url.searchParams.get("pageSize") ?? 25) || 25, 25000);
      const newestFirst = [...versions].reverse().filter((v) => !wanted || v.state === wanted).slice(0, size);
      return Response.json({ versions: newestFirst.map((v) => versionJson(project, secret, v)), totalSize: newestFirst.length });
    }
    const v = which === "latest" ? versions.at(-1) : /^[1-9]\d*$/.test(which) ? versions[Number(which) - 1] : undefined;
    if (!v) return googleError(404, `Secret Version [projects/${PROJECT_NUMBER}/secrets/${secret}/versions/${which}] not found.`);
    if (!access) return Response.json(versionJson(project, secret, v));
    if (v.state !== "ENABLED" || !v.data) return googleError(400, `Secret Version [projects/${PROJECT_NUMBER}/secrets/${secret}/versions/${v.number}] is in ${v.state} state.`, "FAILED_PRECONDITION");
    return Response.json({
      name: `projects/${PROJECT_NUMBER}/secrets/${secret}/versions/${v.number}`,
      payload: { data: Buffer.from(v.data).toString("base64"), dataCrc32c: String(crc32c(v.data)) },
    });
  }

  const authorized = (req: Request) => {
    const token = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    return token !== undefined && state.acceptedTokens.has(token);
  };

  async function pubsub(req: Request, url: URL): Promise<Response> {
    const m = /^\/v1\/(projects\/([^/]+)\/subscriptions\/([^/:]+))(?::(pull|acknowledge|modifyAckDeadline))?$/.exec(decodeURIComponent(url.pathname));
    if (!m) return googleError(404, "Method not found.", "NOT_FOUND");
    const [, rawName, project, id, verb = "get"] = m as unknown as [string, string, string, string, string | undefined];
    const ps = state.pubsub;
    ps.calls[verb] = (ps.calls[verb] ?? 0) + 1;
    if (ps.unavailable) return googleError(503, "The service is currently unavailable.", "UNAVAILABLE");
    if (!authorized(req)) return googleError(401, "Request had invalid authentication credentials.");
    if ((verb === "get") !== (req.method === "GET")) return googleError(404, "Method not found.", "NOT_FOUND");
    const name = project === PROJECT_NUMBER ? `projects/${GCP_TEST_PROJECT}/subscriptions/${id}` : rawName;
    if (ps.denied.has(id)) return googleError(403, `User not authorized to perform this action.`);
    const sub = ps.subscriptions.get(name);
    if (!sub) return googleError(404, `Resource not found (resource=${id}).`);
    if (verb === "get") return Response.json({ name, topic: `projects/${GCP_TEST_PROJECT}/topics/secret-events`, pushConfig: {}, ackDeadlineSeconds: sub.ackDeadlineSeconds, messageRetentionDuration: "604800s", state: "ACTIVE" });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await req.text()) as Record<string, unknown>;
    } catch {
      return googleError(400, "Invalid JSON payload received.", "INVALID_ARGUMENT");
    }
    const ackIds = body.ackIds;
    if (verb !== "pull") {
      if (!Array.isArray(ackIds) || ackIds.length === 0 || !ackIds.every((a) => typeof a === "string")) return googleError(400, "No ack ids specified.", "INVALID_ARGUMENT");
      const seconds = verb === "modifyAckDeadline" ? body.ackDeadlineSeconds : undefined;
      if (verb === "modifyAckDeadline" && (typeof seconds !== "number" || seconds < 0 || seconds > 600)) return googleError(400, "Invalid ack deadline given.", "INVALID_ARGUMENT");
      const wanted = new Set(ackIds as string[]);
      if (verb === "acknowledge") sub.messages = sub.messages.filter((msg) => !(msg.ackId && wanted.has(msg.ackId)));
      else for (const msg of sub.messages) if (msg.ackId && wanted.has(msg.ackId)) msg.leasedUntil = Date.now() + (seconds as number) * 1000;
      return Response.json({});
    }
    const max = body.maxMessages;
    if (typeof max !== "number" || !Number.isInteger(max) || max <= 0) return googleError(400, "maxMessages must be a positive integer.", "INVALID_ARGUMENT");
    const until = Date.now() + PULL_HOLD_MS;
    for (;;) {
      if (req.signal.aborted) return new Response(null, { status: 499 });
      const now = Date.now();
      const ready = sub.messages.filter((msg) => msg.leasedUntil <= now).slice(0, max);
      if (ready.length > 0 || body.returnImmediately === true || now > until) {
        const receivedMessages = ready.map((msg) => {
          msg.ackId = `${msg.id}-${randomBytes(12).toString("base64url")}`;
          msg.leasedUntil = now + sub.ackDeadlineSeconds * 1000;
          msg.deliveries++;
          return { ackId: msg.ackId, message: { data: msg.data, attributes: msg.attributes, messageId: msg.id, publishTime: msg.publishTime }, deliveryAttempt: msg.deliveries };
        });
        return Response.json(receivedMessages.length ? { receivedMessages } : {});
      }
      await Bun.sleep(20);
    }
  }

  function newToken(kind: "key" | "metadata" | "federated" | "impersonated"): string {
    const token = `ya29.test-${randomBytes(24).toString("base64url")}`;
    state.acceptedTokens.add(token);
    state.federation.kinds.set(token, kind);
    return token;
  }

  function issue(kind: "key" | "metadata"): Response {
    return Response.json({ access_token: newToken(kind), expires_in: 3599, token_type: "Bearer" });
  }

  async function federation(req: Request, url: URL): Promise<Response | undefined> {
    const fed = state.federation;
    if (url.pathname === "/subject-token" && req.method === "GET") {
      bump("subjectUrl");
      if (req.headers.get("metadata") !== "true") return Response.json({ error: "invalid_request", error_description: "Required metadata header not specified" }, { status: 400 });
      return Response.json({ access_token: fed.urlSubjectToken, token_type: "Bearer", expires_in: "3599" });
    }
    if (url.pathname === "/sts/v1/token" && req.method === "POST") {
      bump("sts");
      const form = new URLSearchParams(await req.text());
      fed.lastExchange = Object.fromEntries(form);
      const refuse = (description: string) => Response.json({ error: "invalid_grant", error_description: description }, { status: 400 });
      if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:token-exchange") return Response.json({ error: "unsupported_grant_type" }, { status: 400 });
      if (form.get("requested_token_type") !== "urn:ietf:params:oauth:token-type:access_token") return refuse("The requested token type is not supported.");
      if (!form.get("scope")?.split(" ").includes(SCOPE)) return refuse("Invalid scope.");
      if (form.get("audience") !== FEDERATION_AUDIENCE) return refuse("The audience in the token does not match the expected audience.");
      if (form.get("subject_token_type") !== JWT_TOKEN_TYPE) return refuse("Invalid subject token type.");
      if (!fed.subjectTokens.has(form.get("subject_token") ?? "")) return refuse("The subject token is invalid or expired.");
      return Response.json({ access_token: newToken("federated"), issued_token_type: "urn:ietf:params:oauth:token-type:access_token", token_type: "Bearer", expires_in: 3599 });
    }
    const impersonate = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(decodeURIComponent(url.pathname));
    if (impersonate && req.method === "POST") {
      bump("impersonate");
      const bearer = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
      let body: unknown;
      try {
        body = await req.json();
      } catch {
        body = undefined;
      }
      fed.lastImpersonation = { body, bearer: bearer ? fed.kinds.get(bearer) : undefined };
      if (!bearer || fed.kinds.get(bearer) !== "federated") return googleError(401, "Request had invalid authentication credentials.");
      if (impersonate[1] !== IMPERSONATED_ACCOUNT) return googleError(403, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).");
      const scope = (body as { scope?: unknown })?.scope;
      if (!Array.isArray(scope) || !scope.includes(SCOPE)) return googleError(400, "Scope required.", "INVALID_ARGUMENT");
      return Response.json({ accessToken: newToken("impersonated"), expireTime: new Date(Date.now() + 3600_000).toISOString() });
    }
    return undefined;
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    // A held pull outlasts Bun's default 10 s idle timeout.
    idleTimeout: 60,
    async fetch(req): Promise<Response> {
      const url = new URL(req.url);
      if (url.pathname === "/token" && req.method === "POST") {
        bump("token");
        const form = new URLSearchParams(await req.text());
        if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return Response.json({ error: "unsupported_grant_type" }, { status: 400 });
        const problem: string | undefined = state.revokeKey ? "key revoked" : verifyAssertion(form.get("assertion") ?? "", publicPem, `${origin}/token`);
        if (problem) return Response.json({ error: "invalid_grant", error_description: `Invalid JWT: ${problem}` }, { status: 400 });
        return issue("key");
      }
      if (url.pathname === "/computeMetadata/v1/instance/service-accounts/default/token") {
        bump("metadataToken");
        if (req.headers.get("metadata-flavor") !== "Google") return new Response("Missing Metadata-Flavor:Google header.", { status: 403 });
        return issue("metadata");
      }
      const federated = await federation(req, url);
      if (federated) return federated;
      if (url.pathname.startsWith("/v1/") && url.pathname.includes("/subscriptions/")) return pubsub(req, url);
      if (url.pathname.startsWith("/v1/")) return secretManager(req, url);
      return new Response("not found", { status: 404 });
    },
  });
  const origin: string = `http://127.0.0.1:${server.port}`;
  return {
    url: origin,
    project: GCP_TEST_PROJECT,
    projectNumber: PROJECT_NUMBER,
    metadataHost: `127.0.0.1:${server.port}`,
    subjectTokenUrl: `${origin}/subject-token`,
    serviceAccountKey: () =>
      JSON.stringify({
        type: "service_account",
        project_id: GCP_TEST_PROJECT,
        private_key_id: "0123456789abcdef",
        private_key: privatePem,
        client_email: SERVICE_ACCOUNT,
        client_id: "100000000000000000000",
        auth_uri: "https://accounts.google.com/o/oauth2/auth",
        token_uri: `${origin}/token`,
      }),
    externalAccount: (source, options = {}) =>
      JSON.stringify({
        type: "external_account",
        audience: FEDERATION_AUDIENCE,
        subject_token_type: JWT_TOKEN_TYPE,
        token_url: `${origin}/sts/v1/token`,
        credential_source: source,
        ...(options.impersonate ? { service_account_impersonation_url: `${origin}/v1/projects/-/serviceAccounts/${IMPERSONATED_ACCOUNT}:generateAccessToken` } : {}),
      }),
    state,
    stop: async () => void server.stop(true),
  };
}
