// Vault's dynamic secrets for the test server (vault-server.ts), after the public API docs:
// - `GET /v1/<mount>/creds/<role>` for database (username/password) and AWS (access_key/secret_key)
//   engines: a new credential per call with `lease_id` `<mount>/creds/<role>/<id>`,
//   `lease_duration` = the role's default_ttl, `renewable: true`;
// - `POST|PUT /v1/<mount>/issue/<role>` for PKI: a real X.509 certificate (vault-pki.ts) with
//   `certificate`, `private_key`, `private_key_type`, `issuing_ca`, `ca_chain`, `serial_number`,
//   `expiration`; no lease (Vault's default `generate_lease: false`); `POST <mount>/revoke` by serial;
// - `PUT /v1/sys/leases/renew` (`lease_id`, `increment`): capped at the role's max_ttl from issue,
//   with Vault's warning; `PUT /v1/sys/leases/revoke`; `PUT /v1/sys/leases/lookup`
//   (`id`, `issue_time`, `expire_time`, `last_renewal`, `renewable`, `ttl`).
// A lease belongs to the token that created it: revoking (or expiring) that token revokes its
// leases, as Vault does. An expired lease is revoked. Credentials are remembered (never their
// value in a log) so a test can ask whether one is still valid.
import type { IssuedCertificate, TestPki } from "./vault-pki.ts";

export interface DynamicRole {
  /** Seconds. */
  defaultTtl: number;
  maxTtl: number;
}

export type DynamicEngine = { type: "database" | "aws" | "pki"; roles: Record<string, DynamicRole> };

export interface VaultLease {
  id: string;
  /** `<mount>/creds/<role>`. */
  path: string;
  tokenId: string;
  issuedMs: number;
  expiresMs: number;
  maxExpiresMs: number;
  renewable: boolean;
  lastRenewalMs?: number;
  revokedMs?: number;
  /** The username / access key it made (not a secret), to tell credentials apart. */
  identity: string;
}

export interface DynamicState {
  leases: Map<string, VaultLease>;
  /** PKI certificates by serial: revoked when `revokedMs` is set. */
  certificates: Map<string, { serial: string; commonName: string; expiration: number; tokenId: string; revokedMs?: number }>;
  /** Counts per endpoint: creds, issue, renew, revoke, lookup, pkiRevoke. */
  calls: Record<string, number>;
  /** The lease ids still valid (not revoked, not expired) now. */
  activeLeases(): VaultLease[];
}

export class DynamicError extends Error {
  constructor(readonly status: number, readonly errors: string[]) {
    super(errors.join("; "));
  }
}

const randomId = (n = 24) => crypto.randomUUID().replaceAll("-", "").slice(0, n);

export class DynamicEngines implements DynamicState {
  leases = new Map<string, VaultLease>();
  certificates = new Map<string, { serial: string; commonName: string; expiration: number; tokenId: string; revokedMs?: number }>();
  calls: Record<string, number> = {};

  constructor(
    private readonly engines: Record<string, DynamicEngine>,
    private readonly now: () => number,
    private readonly pki: () => Promise<TestPki>,
  ) {}

  /** The engine mount and the rest of `path`, if `path` is under a dynamic engine. */
  match(path: string): { mount: string; engine: DynamicEngine; rest: string } | undefined {
    const mount = Object.keys(this.engines).sort((a, b) => b.length - a.length).find((m) => path.startsWith(`${m}/`));
    return mount ? { mount, engine: this.engines[mount]!, rest: path.slice(mount.length + 1) } : undefined;
  }

  activeLeases(): VaultLease[] {
    this.expire();
    return [...this.leases.values()].filter((l) => l.revokedMs === undefined);
  }

  /** Vault revokes leases when their TTL runs out. */
  expire(): void {
    const t = this.now();
    for (const lease of this.leases.values()) if (lease.revokedMs === undefined && lease.expiresMs <= t) lease.revokedMs = t;
  }

  revokeLeasesOf(tokenId: string): void {
    const t = this.now();
    for (const lease of this.leases.values()) if (lease.tokenId === tokenId && lease.revokedMs === undefined) lease.revokedMs = t;
  }

  async handleEngine(method: string, m: { mount: string; engine: DynamicEngine; rest: string }, body: Record<string, any>, tokenId: string): Promise<unknown> {
    const [op, role, ...more] = m.rest.split("/");
    const spec = role && more.length === 0 ? m.engine.roles[role] : undefined;
    if (m.engine.type === "pki" && op === "revoke" && role === undefined && (method === "POST" || method === "PUT")) return this.pkiRevoke(body);
    if (m.engine.type !== "pki" && op === "creds" && method === "GET") {
      if (!spec) throw new DynamicError(400, [`unknown role: ${role}`]);
      return this.creds(m.mount, m.engine.type as "database" | "aws", role!, spec, tokenId);
    }
    if (m.engine.type === "pki" && op === "issue" && (method === "POST" || method === "PUT")) {
      if (!spec) throw new DynamicError(400, [`unknown role: ${role}`]);
      return this.issue(spec, body, tokenId);
    }
    throw new DynamicError(405, ["unsupported operation"]);
  }

  private creds(mount: string, type: "database" | "aws", role: string, spec: DynamicRole, tokenId: string) {
    this.calls.creds = (this.calls.creds ?? 0) + 1;
    const t = this.now();
    const path = `${mount}/creds/${role}`;
    const id = `${path}/${randomId()}`;
    const identity = type === "database" ? `v-token-${role}-${randomId(20)}-${Math.floor(t / 1000)}` : `AKIA${randomId(16).toUpperCase()}`;
    const lease: VaultLease = { id, path, tokenId, issuedMs: t, expiresMs: t + spec.defaultTtl * 1000, maxExpiresMs: t + spec.maxTtl * 1000, renewable: true, identity };
    this.leases.set(id, lease);
    const data = type === "database" ? { username: identity, password: `A1a-${randomId(20)}` } : { access_key: identity, secret_key: randomId(32) + randomId(8), security_token: null };
    return { request_id: crypto.randomUUID(), lease_id: id, renewable: true, lease_duration: spec.defaultTtl, data, wrap_info: null, warnings: null, auth: null };
  }

  private async issue(spec: DynamicRole, body: Record<string, any>, tokenId: string) {
    this.calls.issue = (this.calls.issue ?? 0) + 1;
    const commonName = String(body.common_name ?? "");
    if (!commonName) throw new DynamicError(400, ["the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false"]);
    const altNames = String(body.alt_names ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const ttl = Math.min(body.ttl === undefined ? spec.defaultTtl : parseTtl(body.ttl), spec.maxTtl);
    const cert: IssuedCertificate = await (await this.pki()).issue(commonName, altNames, ttl, this.now());
    this.certificates.set(cert.serialNumber, { serial: cert.serialNumber, commonName, expiration: cert.expiration, tokenId });
    const data = {
      certificate: cert.certificate,
      issuing_ca: cert.issuingCa,
      ca_chain: [cert.issuingCa],
      private_key: cert.privateKey,
      private_key_type: "ec",
      serial_number: cert.serialNumber,
      expiration: cert.expiration,
    };
    return { request_id: crypto.randomUUID(), lease_id: "", renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null };
  }

  private pkiRevoke(body: Record<string, any>) {
    this.calls.pkiRevoke = (this.calls.pkiRevoke ?? 0) + 1;
    const cert = this.certificates.get(String(body.serial_number ?? ""));
    if (!cert) throw new DynamicError(400, ["certificate with serial not found"]);
    cert.revokedMs ??= this.now();
    return { request_id: crypto.randomUUID(), lease_id: "", renewable: false, lease_duration: 0, data: { revocation_time: Math.floor(cert.revokedMs / 1000) }, wrap_info: null, warnings: null, auth: null };
  }

  /** `sys/leases/<op>`; the caller authenticated the token. */
  handleLeases(op: string, method: string, body: Record<string, any>): unknown {
    if (method !== "PUT" && method !== "POST") throw new DynamicError(405, ["unsupported operation"]);
    this.expire();
    const id = String(body.lease_id ?? body.id ?? "");
    const lease = this.leases.get(id);
    if (op === "revoke") {
      this.calls.revoke = (this.calls.revoke ?? 0) + 1;
      if (lease) lease.revokedMs ??= this.now();
      return undefined; // 204, also for an unknown lease, as Vault does
    }
    if (!lease || lease.revokedMs !== undefined) throw new DynamicError(400, ["invalid lease"]);
    const t = this.now();
    if (op === "lookup") {
      this.calls.lookup = (this.calls.lookup ?? 0) + 1;
      const iso = (ms: number) => new Date(ms).toISOString();
      return {
        request_id: crypto.randomUUID(), lease_id: "", renewable: false, lease_duration: 0, wrap_info: null, warnings: null, auth: null,
        data: { id: lease.id, issue_time: iso(lease.issuedMs), expire_time: iso(lease.expiresMs), last_renewal: lease.lastRenewalMs === undefined ? null : iso(lease.lastRenewalMs), renewable: lease.renewable, ttl: Math.max(0, Math.round((lease.expiresMs - t) / 1000)) },
      };
    }
    if (op === "renew") {
      this.calls.renew = (this.calls.renew ?? 0) + 1;
      if (!lease.renewable) throw new DynamicError(400, ["lease is not renewable"]);
      const role = this.roleOf(lease);
      const wanted = body.increment === undefined ? role.defaultTtl : parseTtl(body.increment);
      const left = Math.max(0, Math.floor((lease.maxExpiresMs - t) / 1000));
      const granted = Math.min(wanted, left);
      lease.expiresMs = t + granted * 1000;
      lease.lastRenewalMs = t;
      const warnings = granted < wanted ? [`TTL of "${wanted}s" exceeded the effective max_ttl of "${left}s"; TTL value is capped accordingly`] : null;
      return { request_id: crypto.randomUUID(), lease_id: lease.id, renewable: true, lease_duration: granted, data: null, wrap_info: null, warnings, auth: null };
    }
    throw new DynamicError(404, [`no handler for route "sys/leases/${op}". route entry not found.`]);
  }

  private roleOf(lease: VaultLease): DynamicRole {
    const [mount, , role] = lease.path.split(/\/(creds)\//);
    return this.engines[mount!]!.roles[role!]!;
  }
}

function parseTtl(value: unknown): number {
  if (typeof value === "number") return value;
  const m = /^(\d+)(s|m|h)?$/.exec(String(value));
  if (!m) throw new DynamicError(400, [`invalid duration: ${String(value)}`]);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"] ?? 1);
}
