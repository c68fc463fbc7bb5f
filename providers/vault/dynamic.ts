/**
 * Vault's dynamic secrets engines, as the lease keeper (src/leases/) needs them: issue a credential
 * (`GET <engine>/creds/<role>`: database, AWS and any engine of that shape; `PUT <engine>/issue/<role>`:
 * PKI), renew, revoke and look up its lease (`sys/leases/renew|revoke|lookup`), revoke a PKI
 * certificate by serial (`<engine>/revoke`), and check the token the leases belong to
 * (`auth/token/lookup-self`): it must outlive them (periodic or orphan, docs/providers/vault.md).
 * Only `issue` returns a value; everything else is lease metadata. Errors never carry a value.
 */
import type NodeVault from "node-vault";
import { ProviderError } from "../errors.ts";
import type { SecretValue } from "../../src/rpc/protocol.ts";
import { isMapping } from "../../src/util/is-mapping.ts";
import { toVaultError, vaultStatus } from "./errors.ts";
import { toSecretValue } from "./kv.ts";

export interface DynamicRequest {
  engine: string;
  kind: "creds" | "issue";
  role: string;
  params: Record<string, string>;
}

/** What is known about a credential's lifetime: never its value. */
export interface LeaseInfo {
  /** Vault's lease id; absent for a PKI certificate (no lease unless the role generates one). */
  leaseId?: string;
  /** A PKI certificate's serial (Vault's `aa:bb:...` form). */
  serial?: string;
  renewable: boolean;
  /** When the credential stops working (ms since the epoch). */
  expiresAtMs: number;
}

export interface IssuedCredential {
  value: SecretValue;
  lease: LeaseInfo;
}

export interface RenewalResult {
  /** The new expiry; shorter than asked when the lease's max_ttl is near. */
  expiresAtMs: number;
  /** Vault granted less than asked for (max_ttl reached): the next step is a replacement. */
  capped: boolean;
}

export interface AgentTokenInfo {
  ttlSeconds: number;
  renewable: boolean;
  orphan: boolean;
  /** Periodic tokens renew to this TTL forever (no max). */
  periodSeconds?: number;
}

const SEGMENT = /^[A-Za-z0-9_.-]+$/;

function pathOf(request: DynamicRequest): string {
  const segments = [...request.engine.split("/"), request.kind, request.role];
  if (!segments.every((s) => SEGMENT.test(s) && s !== "." && s !== "..")) throw new ProviderError("CONFIG_INVALID", "a dynamic secret's path must be <engine>/creds|issue/<role>");
  return segments.join("/");
}

type Envelope = { lease_id?: string; lease_duration?: number; renewable?: boolean; data?: unknown; warnings?: unknown };

export class DynamicEngine {
  constructor(
    private readonly client: NodeVault.client,
    private readonly label: string,
    private readonly now: () => number = Date.now,
  ) {}

  async issue(request: DynamicRequest, signal: AbortSignal): Promise<IssuedCredential> {
    const path = pathOf(request);
    const subject = `dynamic secret ${path}`;
    let response: Envelope;
    try {
      response = (request.kind === "creds"
        ? await this.client.read(path, { signal })
        : await this.client.write(path, request.params, { signal })) as Envelope;
    } catch (error) {
      throw toVaultError(error, this.label, subject);
    }
    const data = response.data;
    if (!isMapping(data)) throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.label}: ${subject}: Vault returned no data`);
    if (request.kind === "issue") return { value: pkiValue(data, subject), lease: this.certificateLease(response, data) };
    if (!response.lease_id) throw new ProviderError("PROVIDER_UNAVAILABLE", `${this.label}: ${subject}: Vault returned no lease`);
    return {
      value: toSecretValue(Object.fromEntries(Object.entries(data).filter(([, v]) => v !== null)), subject),
      lease: { leaseId: response.lease_id, renewable: response.renewable === true, expiresAtMs: this.now() + Number(response.lease_duration ?? 0) * 1000 },
    };
  }

  /** Renew for `incrementSeconds`; a refusal (not renewable, gone) is PROVIDER_UNAVAILABLE or SECRET_NOT_FOUND. */
  async renew(leaseId: string, incrementSeconds: number, signal: AbortSignal): Promise<RenewalResult> {
    let response: Envelope;
    try {
      response = (await this.client.write("sys/leases/renew", { lease_id: leaseId, increment: incrementSeconds }, { signal })) as Envelope;
    } catch (error) {
      throw toVaultError(error, this.label, "lease renewal");
    }
    const granted = Number(response.lease_duration ?? 0);
    return { expiresAtMs: this.now() + granted * 1000, capped: granted < incrementSeconds };
  }

  async revoke(lease: { leaseId?: string; serial?: string; engine: string }, signal: AbortSignal): Promise<void> {
    try {
      if (lease.leaseId) await this.client.write("sys/leases/revoke", { lease_id: lease.leaseId }, { signal });
      else if (lease.serial) await this.client.write(`${lease.engine}/revoke`, { serial_number: lease.serial }, { signal });
    } catch (error) {
      throw toVaultError(error, this.label, "lease revocation");
    }
  }

  /** The lease as Vault knows it; `valid: false` when Vault answers "invalid lease" (revoked, expired). */
  async lookup(leaseId: string, signal: AbortSignal): Promise<{ valid: boolean; expiresAtMs: number; renewable: boolean; lastRenewalAtMs?: number }> {
    let response: Envelope;
    try {
      response = (await this.client.write("sys/leases/lookup", { lease_id: leaseId }, { signal })) as Envelope;
    } catch (error) {
      if (vaultStatus(error) === 400) return { valid: false, expiresAtMs: this.now(), renewable: false };
      throw toVaultError(error, this.label, "lease lookup");
    }
    const data = (isMapping(response.data) ? response.data : {}) as { expire_time?: string; renewable?: boolean; last_renewal?: string | null };
    return {
      valid: true,
      expiresAtMs: Date.parse(String(data.expire_time ?? "")) || this.now(),
      renewable: data.renewable === true,
      ...(data.last_renewal ? { lastRenewalAtMs: Date.parse(data.last_renewal) } : {}),
    };
  }

  /** The token's shape, for `dso doctor`: leases die with the token that created them. */
  async agentToken(signal: AbortSignal): Promise<AgentTokenInfo> {
    let response: Envelope;
    try {
      response = (await this.client.tokenLookupSelf({ requestOptions: { signal } })) as Envelope;
    } catch (error) {
      throw toVaultError(error, this.label, "token lookup");
    }
    const data = (isMapping(response.data) ? response.data : {}) as { ttl?: number; renewable?: boolean; orphan?: boolean; period?: number };
    return {
      ttlSeconds: Number(data.ttl ?? 0),
      renewable: data.renewable === true,
      orphan: data.orphan === true,
      ...(data.period ? { periodSeconds: Number(data.period) } : {}),
    };
  }

  private certificateLease(response: Envelope, data: Record<string, unknown>): LeaseInfo {
    const expiration = Number(data.expiration);
    return {
      ...(response.lease_id ? { leaseId: response.lease_id } : {}),
      ...(typeof data.serial_number === "string" ? { serial: data.serial_number } : {}),
      renewable: false,
      expiresAtMs: Number.isFinite(expiration) && expiration > 0 ? expiration * 1000 : this.now() + Number(response.lease_duration ?? 0) * 1000,
    };
  }
}

/** A certificate as files: certificate, private_key, issuing_ca, ca_chain (PEM, joined), serial_number. */
function pkiValue(data: Record<string, unknown>, subject: string): SecretValue {
  const chain = Array.isArray(data.ca_chain) ? data.ca_chain.map(String).join("\n") : undefined;
  const files: Record<string, unknown> = {
    certificate: data.certificate,
    private_key: data.private_key,
    issuing_ca: data.issuing_ca,
    ...(chain ? { ca_chain: chain } : {}),
    serial_number: data.serial_number,
  };
  return toSecretValue(Object.fromEntries(Object.entries(files).filter(([, v]) => typeof v === "string")), subject);
}

/** Seconds a token must still live for leases issued now to survive their whole lease. */
export function tokenOutlivesLeases(token: AgentTokenInfo, longestLeaseSeconds: number): string | undefined {
  if (token.periodSeconds !== undefined && token.renewable) return undefined;
  if (token.ttlSeconds === 0) return undefined; // root-like: never expires
  if (!token.orphan) return "the Vault token is neither periodic nor an orphan: its leases are revoked with its parent";
  if (token.ttlSeconds < longestLeaseSeconds) return `the Vault token expires in ${token.ttlSeconds}s, before its leases (${longestLeaseSeconds}s): use a periodic token`;
  return undefined;
}
