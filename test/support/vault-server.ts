// Local HashiCorp Vault speaking the documented HTTP API, for driving the real node-vault client.
// Covered: KV v2 (/v1/<mount>/data/<path>[?version=N], /v1/<mount>/metadata/<path>, LIST via the
// LIST method or ?list=true), KV v1 (/v1/<mount>/<path>), /v1/auth/approle/login,
// /v1/auth/token/lookup-self, /v1/auth/token/renew-self, X-Vault-Token (or Authorization: Bearer),
// X-Vault-Namespace, and ACL policies as path globs ("*" suffix, "+" segment) with capabilities.
// Simplifications: every namespace has the same mount table; a non-root token works only in the
// namespace it was issued in (the root token works everywhere); the "default" policy is implied
// for lookup-self/renew-self; writes over HTTP are supported, deletes only through `state`.
// Errors are {"errors": [...]} with Vault's status codes.
// Dynamic secrets (vault-dynamic.ts): `engines` mounts database/AWS creds and PKI issue engines;
// sys/leases/renew|revoke|lookup; auth/token/create (period, ttl, no_parent), create-orphan,
// revoke-self, revoke; a token's revocation or expiry revokes its leases and its child tokens (an
// expired token is revoked at the next request, whoever sends it, as Vault's expiration manager
// revokes it on time without being asked).
// `unavailable` answers 503 to everything (an outage).
// Why a TCP front: Bun's HTTP parser (Bun.serve and node:http alike, Bun 1.4.4) rejects the
// non-standard LIST method that node-vault's list() sends, so a tiny node:net front rewrites a
// "LIST" request line to GET plus an x-emulator-method header before the request reaches Bun.serve.
// It frames requests by Content-Length only (no chunked request bodies; Vault clients send none).
import net from "node:net";
import { DynamicEngines, DynamicError, type DynamicEngine, type DynamicState } from "./vault-dynamic.ts";
import { TestPki } from "./vault-pki.ts";

export type VaultCapability = "read" | "list" | "create" | "update" | "delete";
export interface VaultPolicyRule { path: string; capabilities: VaultCapability[] }

export interface VaultToken {
  id: string;
  accessor: string;
  policies: string[];
  namespace: string;
  /** The TTL the token was created with, in seconds; 0 = never expires. */
  creationTtl: number;
  expiresAtMs: number | undefined;
  renewable: boolean;
  issuedAtMs: number;
  /** Periodic token: every renewal sets the TTL to this many seconds, without a max. */
  period?: number;
  /** The token that created it; undefined for an orphan. Revoking the parent revokes it. */
  parent?: string;
}

interface KvVersion { data: Record<string, unknown>; createdMs: number; deletedMs?: number }
interface KvV2Entry { createdMs: number; updatedMs: number; versions: Map<number, KvVersion>; current: number }

export interface VaultServerState {
  /** Requests per endpoint kind that got past faults: data, metadata, list, kv1, login, lookupSelf,
   *  renewSelf; plus `requests` (every request, before faults) and `throttled` (429s sent). */
  calls: Record<string, number>;
  policies: Map<string, VaultPolicyRule[]>;
  tokens: Map<string, VaultToken>;
  rootToken: string;
  /** Writes `<mount>/<path>` (KV v2: adds a version and returns its number; KV v1: returns 0). */
  writeSecret(fullPath: string, data: Record<string, unknown>, opts?: { namespace?: string }): number;
  /** Deletes the secret with all its versions and metadata. */
  deleteSecret(fullPath: string, opts?: { namespace?: string }): void;
  createToken(opts: { policies: string[]; ttlSeconds?: number; renewable?: boolean; namespace?: string }): string;
  addAppRole(role: { roleId: string; secretId: string; policies: string[]; tokenTtlSeconds?: number; namespace?: string }): void;
  /** Moves the server clock forward, so token TTLs can expire without waiting. */
  advanceClock(seconds: number): void;
  throttleNext(count: number): void;
  /** While true every token-authenticated request gets 403 permission denied. */
  failAuth: boolean;
  delayMs: number;
  /** While true every request gets 503 (Vault sealed / unreachable). */
  unavailable: boolean;
  /** Dynamic engines, leases and certificates. */
  dynamic: DynamicState;
  /** Revoke a token, its child tokens and all their leases (as `auth/token/revoke`). */
  revokeToken(id: string): void;
}

export interface VaultServerOptions {
  /** Mount path → KV version. Default: { secret: 2, kv: 1 }. */
  mounts?: Record<string, 1 | 2>;
  rootToken?: string;
  /** Dynamic secrets engines by mount, e.g. { database: { type: "database", roles: { app: { defaultTtl: 6, maxTtl: 12 } } } }. */
  engines?: Record<string, DynamicEngine>;
}

export interface VaultServer { url: string; state: VaultServerState; stop(): Promise<void> }

class VaultError extends Error {
  constructor(readonly status: number, readonly errors: string[]) { super(errors.join("; ")); }
}
const denied = () => new VaultError(403, ["permission denied"]);
const notFound = () => new VaultError(404, []);

const iso = (ms: number) => new Date(ms).toISOString();
const normNs = (ns: string | null | undefined) => (ns ?? "").replace(/^\/+|\/+$/g, "");

function globMatches(pattern: string, path: string): boolean {
  const prefix = pattern.endsWith("*");
  const pSegs = (prefix ? pattern.slice(0, -1) : pattern).split("/");
  const segs = path.split("/");
  for (let i = 0; i < pSegs.length; i++) {
    const p = pSegs[i]!;
    const s = segs[i];
    if (s === undefined) return false;
    const last = i === pSegs.length - 1;
    if (p === "+") continue;
    if (last && prefix) return s.startsWith(p) && segs.length >= pSegs.length;
    if (p !== s) return false;
  }
  return prefix || segs.length === pSegs.length;
}

function parseDurationSeconds(v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "number") return v;
  const m = /^(\d+)(s|m|h)?$/.exec(String(v));
  if (!m) throw new VaultError(400, [`invalid duration: ${String(v)}`]);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"] ?? 1);
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function envelope(data: unknown, auth: unknown = null, lease_duration = 0) {
  return { request_id: crypto.randomUUID(), lease_id: "", renewable: false, lease_duration, data, wrap_info: null, warnings: null, auth };
}

export async function startVaultServer(opts: VaultServerOptions = {}): Promise<VaultServer> {
  const mounts = opts.mounts ?? { secret: 2, kv: 1 };
  const mountNames = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const kv2 = new Map<string, KvV2Entry>();
  const kv1 = new Map<string, Record<string, unknown>>();
  const appRoles = new Map<string, { secretId: string; policies: string[]; ttl: number }>();
  let clockOffsetMs = 0;
  let throttleRemaining = 0;
  const now = () => Date.now() + clockOffsetMs;
  let pki: Promise<TestPki> | undefined;
  const dynamic = new DynamicEngines(opts.engines ?? {}, now, () => (pki ??= TestPki.create()));
  const storeKey = (ns: string, mount: string, path: string) => `${ns}\u0000${mount}\u0000${path}`;

  function splitMount(fullPath: string): { mount: string; version: 1 | 2; rest: string } | undefined {
    const clean = fullPath.replace(/^\/+/, "");
    const mount = mountNames.find((m) => clean === m || clean.startsWith(`${m}/`));
    return mount ? { mount, version: mounts[mount]!, rest: clean.slice(mount.length + 1) } : undefined;
  }

  function writeV2(key: string, data: Record<string, unknown>): number {
    const t = now();
    const entry = kv2.get(key) ?? { createdMs: t, updatedMs: t, versions: new Map(), current: 0 };
    entry.current += 1;
    entry.updatedMs = t;
    entry.versions.set(entry.current, { data: structuredClone(data), createdMs: t });
    kv2.set(key, entry);
    return entry.current;
  }

  const state: VaultServerState = {
    calls: {},
    policies: new Map(),
    tokens: new Map(),
    rootToken: opts.rootToken ?? "dso-test-root-token",
    failAuth: false,
    delayMs: 0,
    unavailable: false,
    dynamic,
    revokeToken(id) {
      if (!state.tokens.delete(id)) return;
      dynamic.revokeLeasesOf(id);
      for (const child of [...state.tokens.values()]) if (child.parent === id) state.revokeToken(child.id);
    },
    writeSecret(fullPath, data, { namespace } = {}) {
      const m = splitMount(fullPath);
      if (!m) throw new Error(`no KV mount for ${fullPath}`);
      const key = storeKey(normNs(namespace), m.mount, m.rest);
      if (m.version === 2) return writeV2(key, data);
      kv1.set(key, structuredClone(data));
      return 0;
    },
    deleteSecret(fullPath, { namespace } = {}) {
      const m = splitMount(fullPath);
      if (!m) return;
      const key = storeKey(normNs(namespace), m.mount, m.rest);
      kv2.delete(key);
      kv1.delete(key);
    },
    createToken({ policies, ttlSeconds = 0, renewable = true, namespace }) {
      const id = `hvs.${crypto.randomUUID().replaceAll("-", "")}`;
      const t = now();
      state.tokens.set(id, {
        id, accessor: crypto.randomUUID(), policies, namespace: normNs(namespace), creationTtl: ttlSeconds,
        expiresAtMs: ttlSeconds > 0 ? t + ttlSeconds * 1000 : undefined, renewable: renewable && ttlSeconds > 0, issuedAtMs: t,
      });
      return id;
    },
    addAppRole({ roleId, secretId, policies, tokenTtlSeconds = 3600, namespace }) {
      appRoles.set(`${normNs(namespace)}\u0000${roleId}`, { secretId, policies, ttl: tokenTtlSeconds });
    },
    advanceClock(seconds) { clockOffsetMs += seconds * 1000; },
    throttleNext(count) { throttleRemaining = count; },
  };
  state.tokens.set(state.rootToken, {
    id: state.rootToken, accessor: "root-accessor", policies: ["root"], namespace: "", creationTtl: 0,
    expiresAtMs: undefined, renewable: false, issuedAtMs: now(),
  });

  /** Vault revokes a token when its TTL runs out, used or not, and its leases with it. */
  function revokeExpiredTokens(): void {
    const t = now();
    for (const token of [...state.tokens.values()]) if (token.expiresAtMs !== undefined && token.expiresAtMs <= t) state.revokeToken(token.id);
  }

  function authenticate(req: Request, ns: string): VaultToken {
    const header = req.headers.get("x-vault-token") ?? req.headers.get("authorization")?.replace(/^Bearer /i, "");
    const token = header ? state.tokens.get(header) : undefined;
    if (!token || state.failAuth) throw denied();
    if (token.expiresAtMs !== undefined && token.expiresAtMs <= now()) {
      state.revokeToken(token.id); // Vault revokes expired tokens, with their leases
      throw denied();
    }
    if (!token.policies.includes("root") && token.namespace !== ns) throw denied();
    return token;
  }

  function authorize(token: VaultToken, aclPath: string, capability: VaultCapability): void {
    if (token.policies.includes("root")) return;
    const allowed = token.policies.some((p) => (state.policies.get(p) ?? []).some((r) => r.capabilities.includes(capability) && globMatches(r.path, aclPath)));
    if (!allowed) throw denied();
  }

  function tokenView(t: VaultToken) {
    const ttl = t.expiresAtMs === undefined ? 0 : Math.max(0, Math.round((t.expiresAtMs - now()) / 1000));
    return { ttl, policies: t.policies };
  }

  function listKeys(prefixKey: string, fromStore: Iterable<string>): string[] {
    const keys = new Set<string>();
    for (const k of fromStore) {
      if (!k.startsWith(prefixKey)) continue;
      const rest = k.slice(prefixKey.length);
      const slash = rest.indexOf("/");
      keys.add(slash === -1 ? rest : rest.slice(0, slash + 1));
    }
    if (keys.size === 0) throw notFound();
    return [...keys].sort();
  }

  async function handleAuth(req: Request, path: string, ns: string, body: Record<string, any>) {
    if (path === "auth/approle/login" && req.method === "POST") {
      state.calls.login = (state.calls.login ?? 0) + 1;
      const role = appRoles.get(`${ns}\u0000${String(body.role_id ?? "")}`);
      if (!role) throw new VaultError(400, ["invalid role ID"]);
      if (role.secretId !== body.secret_id) throw new VaultError(400, ["invalid secret id"]);
      const id = state.createToken({ policies: ["default", ...role.policies], ttlSeconds: role.ttl, namespace: ns });
      const t = state.tokens.get(id)!;
      return envelope(null, { client_token: id, accessor: t.accessor, policies: t.policies, token_policies: t.policies, metadata: { role_name: "dso" }, lease_duration: role.ttl, renewable: true, entity_id: "", token_type: "service", orphan: true });
    }
    if (path === "auth/token/lookup-self" && req.method === "GET") {
      state.calls.lookupSelf = (state.calls.lookupSelf ?? 0) + 1;
      const t = authenticate(req, ns);
      const { ttl, policies } = tokenView(t);
      return envelope({
        accessor: t.accessor, creation_time: Math.floor(t.issuedAtMs / 1000), creation_ttl: t.creationTtl, display_name: "token",
        entity_id: "", expire_time: t.expiresAtMs === undefined ? null : iso(t.expiresAtMs), explicit_max_ttl: 0, id: t.id,
        issue_time: iso(t.issuedAtMs), meta: null, num_uses: 0, orphan: t.parent === undefined, path: "auth/token/create", policies,
        ...(t.period === undefined ? {} : { period: t.period }),
        renewable: t.renewable, ttl, type: "service", namespace_path: t.namespace ? `${t.namespace}/` : "",
      });
    }
    if (path === "auth/token/renew-self" && (req.method === "POST" || req.method === "PUT")) {
      state.calls.renewSelf = (state.calls.renewSelf ?? 0) + 1;
      const t = authenticate(req, ns);
      if (!t.renewable) throw new VaultError(400, ["lease is not renewable"]);
      const increment = t.period ?? parseDurationSeconds(body.increment) ?? t.creationTtl;
      t.expiresAtMs = now() + increment * 1000;
      return envelope(null, { client_token: t.id, accessor: t.accessor, policies: t.policies, token_policies: t.policies, metadata: null, lease_duration: increment, renewable: true, token_type: "service", orphan: true });
    }
    const create = /^auth\/token\/(create|create-orphan)$/.exec(path);
    if (create && (req.method === "POST" || req.method === "PUT")) {
      state.calls.tokenCreate = (state.calls.tokenCreate ?? 0) + 1;
      const parent = authenticate(req, ns);
      const orphan = create[1] === "create-orphan" || body.no_parent === true;
      if (body.no_parent === true && !parent.policies.includes("root")) throw new VaultError(400, ["root or sudo privileges required to create orphan token"]);
      const period = parseDurationSeconds(body.period);
      const ttl = period ?? parseDurationSeconds(body.ttl) ?? 0;
      const policies: string[] = Array.isArray(body.policies) && body.policies.length ? body.policies.map(String) : parent.policies;
      const id = state.createToken({ policies, ttlSeconds: ttl, renewable: body.renewable !== false, namespace: ns });
      const t = state.tokens.get(id)!;
      if (period !== undefined) t.period = period;
      if (!orphan) t.parent = parent.id;
      return envelope(null, { client_token: id, accessor: t.accessor, policies: t.policies, token_policies: t.policies, metadata: null, lease_duration: ttl, renewable: t.renewable, entity_id: "", token_type: "service", orphan });
    }
    if (path === "auth/token/revoke-self" && (req.method === "POST" || req.method === "PUT")) {
      state.revokeToken(authenticate(req, ns).id);
      return undefined;
    }
    if (path === "auth/token/revoke" && (req.method === "POST" || req.method === "PUT")) {
      authenticate(req, ns);
      state.revokeToken(String(body.token ?? ""));
      return undefined;
    }
    throw new VaultError(404, [`no handler for route "${path}". route entry not found.`]);
  }

  function handleKv2(req: Request, method: string, ns: string, mount: string, rest: string, body: Record<string, any>, token: VaultToken) {
    const [kind, ...segs] = rest.split("/");
    const path = segs.join("/");
    const key = storeKey(ns, mount, path);
    const acl = `${mount}/${rest}`;
    if (kind === "metadata" && method === "LIST") {
      state.calls.list = (state.calls.list ?? 0) + 1;
      authorize(token, acl, "list");
      return envelope({ keys: listKeys(storeKey(ns, mount, path.replace(/\/?$/, path ? "/" : "")), kv2.keys()) });
    }
    if (kind === "metadata" && method === "GET") {
      state.calls.metadata = (state.calls.metadata ?? 0) + 1;
      authorize(token, acl, "read");
      const e = kv2.get(key);
      if (!e) throw notFound();
      const versions = Object.fromEntries([...e.versions].map(([n, v]) => [String(n), { created_time: iso(v.createdMs), deletion_time: v.deletedMs ? iso(v.deletedMs) : "", destroyed: false }]));
      return envelope({ cas_required: false, created_time: iso(e.createdMs), current_version: e.current, custom_metadata: null, delete_version_after: "0s", max_versions: 0, oldest_version: 0, updated_time: iso(e.updatedMs), versions });
    }
    if (kind !== "data") throw new VaultError(404, [`no handler for route "${mount}/${rest}". route entry not found.`]);
    state.calls.data = (state.calls.data ?? 0) + 1;
    if (method === "GET") {
      authorize(token, acl, "read");
      const e = kv2.get(key);
      const n = Number(new URL(req.url).searchParams.get("version") || 0) || e?.current;
      const v = n === undefined ? undefined : e?.versions.get(n);
      // A soft-deleted version answers 404, as Vault does.
      if (!v || v.deletedMs) throw notFound();
      const metadata = { created_time: iso(v.createdMs), custom_metadata: null, deletion_time: "", destroyed: false, version: n };
      return envelope({ data: structuredClone(v.data), metadata });
    }
    if (method === "POST" || method === "PUT") {
      authorize(token, acl, kv2.has(key) ? "update" : "create");
      const cas = body.options?.cas;
      if (cas !== undefined && cas !== (kv2.get(key)?.current ?? 0)) throw new VaultError(400, ["check-and-set parameter did not match the current version"]);
      const n = writeV2(key, body.data ?? {});
      return envelope({ created_time: iso(now()), custom_metadata: null, deletion_time: "", destroyed: false, version: n });
    }
    if (method === "DELETE") {
      // Soft-deletes the current version (DELETE <mount>/data/<path>).
      authorize(token, acl, "delete");
      const e = kv2.get(key);
      const v = e?.versions.get(e.current);
      if (v) v.deletedMs = now();
      return new Response(null, { status: 204 });
    }
    throw new VaultError(405, ["unsupported operation"]);
  }

  function handleKv1(method: string, ns: string, mount: string, rest: string, body: Record<string, any>, token: VaultToken) {
    state.calls.kv1 = (state.calls.kv1 ?? 0) + 1;
    const key = storeKey(ns, mount, rest);
    const acl = `${mount}/${rest}`;
    if (method === "LIST") {
      state.calls.list = (state.calls.list ?? 0) + 1;
      authorize(token, acl, "list");
      return envelope({ keys: listKeys(storeKey(ns, mount, rest.replace(/\/?$/, rest ? "/" : "")), kv1.keys()) });
    }
    if (method === "GET") {
      authorize(token, acl, "read");
      const data = kv1.get(key);
      if (!data) throw notFound();
      return envelope(structuredClone(data), null, 2764800); // KV v1 reports the 32-day default lease
    }
    if (method === "POST" || method === "PUT") {
      authorize(token, acl, kv1.has(key) ? "update" : "create");
      kv1.set(key, structuredClone(body));
      return undefined;
    }
    throw new VaultError(405, ["unsupported operation"]);
  }

  async function handle(req: Request): Promise<unknown> {
    const url = new URL(req.url);
    if (!url.pathname.startsWith("/v1/")) throw notFound();
    const path = decodeURIComponent(url.pathname.slice("/v1/".length));
    const list = url.searchParams.get("list");
    const asList = req.headers.get(METHOD_HEADER) === "LIST" || list === "true" || list === "1";
    const method = req.method === "GET" && asList ? "LIST" : req.method;
    state.calls.requests = (state.calls.requests ?? 0) + 1;
    revokeExpiredTokens();
    if (state.unavailable) throw new VaultError(503, ["Vault is sealed"]);
    if (state.delayMs > 0) await abortableSleep(state.delayMs, req.signal);
    if (throttleRemaining > 0) {
      throttleRemaining--;
      state.calls.throttled = (state.calls.throttled ?? 0) + 1;
      throw new VaultError(429, [`request path "${path}": rate limit quota exceeded`]);
    }
    const ns = normNs(req.headers.get("x-vault-namespace"));
    const text = method === "POST" || method === "PUT" ? await req.text() : "";
    const body = (text ? JSON.parse(text) : {}) as Record<string, any>;
    if (path.startsWith("auth/")) return handleAuth(req, path, ns, body);
    const leaseOp = /^sys\/leases\/(renew|revoke|lookup)$/.exec(path);
    if (leaseOp) {
      authorize(authenticate(req, ns), path, "update");
      return dynamic.handleLeases(leaseOp[1]!, method, body);
    }
    const engine = dynamic.match(path);
    if (engine) {
      const token = authenticate(req, ns);
      authorize(token, path, method === "GET" ? "read" : "update");
      return dynamic.handleEngine(method, engine, body, token.id);
    }
    const m = splitMount(path);
    if (!m) throw new VaultError(404, [`no handler for route "${path}". route entry not found.`]);
    const token = authenticate(req, ns);
    return m.version === 2 ? handleKv2(req, method, ns, m.mount, m.rest, body, token) : handleKv1(method, ns, m.mount, m.rest, body, token);
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    async fetch(req) {
      try {
        const out = await handle(req);
        return out === undefined ? new Response(null, { status: 204 }) : Response.json(out);
      } catch (e) {
        if (e instanceof VaultError || e instanceof DynamicError) return Response.json({ errors: e.errors }, { status: e.status });
        if (e instanceof SyntaxError) return Response.json({ errors: ["failed to parse JSON input"] }, { status: 400 });
        return Response.json({ errors: [String(e)] }, { status: 500 });
      }
    },
  });

  const front = await startListMethodFront(server.port!);
  return {
    url: `http://127.0.0.1:${front.port}`,
    state,
    stop: async () => { await front.close(); await server.stop(true); if (pki) (await pki).remove(); },
  };
}

const METHOD_HEADER = "x-emulator-method";
const MAX_HEAD_BYTES = 64 * 1024;

/** Forwards HTTP/1.1 to the backend port, turning each "LIST <path>" request into a GET. */
async function startListMethodFront(backendPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const front = net.createServer((client) => {
    const upstream = net.connect(backendPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    let bodyLeft = 0;
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length > 0) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, pending.length);
          upstream.write(pending.subarray(0, n));
          pending = pending.subarray(n);
          bodyLeft -= n;
          continue;
        }
        const end = pending.indexOf("\r\n\r\n");
        if (end === -1) {
          if (pending.length > MAX_HEAD_BYTES) client.destroy();
          return;
        }
        let head = pending.subarray(0, end + 4).toString("latin1");
        pending = pending.subarray(end + 4);
        bodyLeft = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (head.startsWith("LIST ")) head = head.replace(/^LIST ([^\r]*)\r\n/, `GET $1\r\n${METHOD_HEADER}: LIST\r\n`);
        upstream.write(Buffer.from(head, "latin1"));
      }
    });
    const closeBoth = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on("close", closeBoth).on("error", closeBoth);
    upstream.on("close", closeBoth).on("error", closeBoth);
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  const port = (front.address() as net.AddressInfo).port;
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      front.close(() => resolve());
    }),
  };
}
