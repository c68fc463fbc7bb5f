// The vault provider's dynamic engine calls (providers/vault/dynamic.ts) against the Vault wire
// server: database creds, PKI issue with a real certificate, renew capped at max_ttl, revoke,
// lookup, and a token whose revocation revokes its leases.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import nodeVault from "node-vault";
import { X509Certificate } from "node:crypto";
import { DynamicEngine, tokenOutlivesLeases } from "../../providers/vault/dynamic.ts";
import { createVaultTransport } from "../../providers/vault/transport.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";

let vault: VaultServer;
beforeAll(async () => {
  vault = await startVaultServer({
    engines: {
      database: { type: "database", roles: { app: { defaultTtl: 6, maxTtl: 10 } } },
      pki: { type: "pki", roles: { web: { defaultTtl: 60, maxTtl: 3600 } } },
    },
  });
});
afterAll(() => vault.stop());

function engineFor(token: string): DynamicEngine {
  const client = nodeVault({
    apiVersion: "v1",
    endpoint: vault.url,
    token,
    debug: () => {},
    "request-promise": createVaultTransport({ label: "provider vault", address: vault.url, skipTlsVerify: false }),
  } as never);
  return new DynamicEngine(client, "provider vault");
}

const text = (v: string | Uint8Array | undefined) => (typeof v === "string" ? v : new TextDecoder().decode(v));
const signal = () => AbortSignal.timeout(5_000);

describe("Vault dynamic secrets (provider side)", () => {
  test("two issues of a database role are two distinct credentials, each with its own lease", async () => {
    const engine = engineFor(vault.state.rootToken);
    const request = { engine: "database", kind: "creds" as const, role: "app", params: {} };
    const a = await engine.issue(request, signal());
    const b = await engine.issue(request, signal());
    expect(a.lease.leaseId).toStartWith("database/creds/app/");
    expect(a.lease.leaseId).not.toBe(b.lease.leaseId);
    expect(text(a.value.data.username)).not.toBe(text(b.value.data.username));
    expect(a.lease.renewable).toBe(true);
    expect(a.lease.expiresAtMs - Date.now()).toBeGreaterThan(4_000);
    expect(vault.state.dynamic.calls.creds).toBe(2);
  });

  test("a renewal is capped at max_ttl and says so; revoke ends the lease; lookup reports it", async () => {
    const engine = engineFor(vault.state.rootToken);
    const { lease } = await engine.issue({ engine: "database", kind: "creds", role: "app", params: {} }, signal());
    const first = await engine.renew(lease.leaseId!, 6, signal());
    expect(first.capped).toBe(false);
    vault.state.advanceClock(5);
    const second = await engine.renew(lease.leaseId!, 6, signal());
    expect(second.capped).toBe(true); // 10 s max_ttl: 5 s left
    const looked = await engine.lookup(lease.leaseId!, signal());
    expect(looked.renewable).toBe(true);
    expect(looked.lastRenewalAtMs).toBeNumber();
    await engine.revoke({ leaseId: lease.leaseId!, engine: "database" }, signal());
    expect(vault.state.dynamic.leases.get(lease.leaseId!)?.revokedMs).toBeNumber();
    await expect(engine.renew(lease.leaseId!, 6, signal())).rejects.toMatchObject({ rpcCode: "PROVIDER_UNAVAILABLE" });
  });

  test("a PKI issue returns a real X.509 certificate with the asked names and ttl, no lease, revocable by serial", async () => {
    const engine = engineFor(vault.state.rootToken);
    const issued = await engine.issue({ engine: "pki", kind: "issue", role: "web", params: { common_name: "web.internal", alt_names: "a.internal", ttl: "30s" } }, signal());
    const cert = new X509Certificate(text(issued.value.data.certificate));
    expect(cert.subject).toContain("CN=web.internal");
    expect(cert.subjectAltName).toContain("DNS:a.internal");
    expect(cert.checkIssued(new X509Certificate(text(issued.value.data.issuing_ca)))).toBe(true);
    expect(Math.abs(Date.parse(cert.validTo) - issued.lease.expiresAtMs)).toBeLessThan(1_000);
    expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBeLessThanOrEqual(91_000); // from a minute ago to 30 s on
    expect(issued.lease.leaseId).toBeUndefined();
    expect(issued.lease.serial).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
    expect(text(issued.value.data.private_key)).toContain("PRIVATE KEY");
    await engine.revoke({ serial: issued.lease.serial!, engine: "pki" }, signal());
    expect(vault.state.dynamic.certificates.get(issued.lease.serial!)?.revokedMs).toBeNumber();
  });

  test("leases die with the token that created them; a periodic orphan token outlives its parent", async () => {
    const create = async (by: string, body: object) =>
      ((await (await fetch(`${vault.url}/v1/auth/token/create`, { method: "POST", headers: { "x-vault-token": by }, body: JSON.stringify(body) })).json()) as { auth: { client_token: string; orphan: boolean } }).auth;
    const parent = (await create(vault.state.rootToken, { ttl: "1h", policies: ["root"] })).client_token;
    const childAuth = await create(parent, { ttl: "1h" });
    expect(childAuth.orphan).toBe(false);
    const child = engineFor(childAuth.client_token);
    const { lease } = await child.issue({ engine: "database", kind: "creds", role: "app", params: {} }, signal());
    const created = await create(parent, { period: "1h", no_parent: true, policies: ["root"] });
    expect(created.orphan).toBe(true);
    const agent = engineFor(created.client_token);
    const kept = await agent.issue({ engine: "database", kind: "creds", role: "app", params: {} }, signal());
    expect(tokenOutlivesLeases(await agent.agentToken(signal()), 10)).toBeUndefined();
    expect(tokenOutlivesLeases(await child.agentToken(signal()), 10)).toContain("neither periodic nor an orphan");
    vault.state.revokeToken(parent);
    expect(vault.state.tokens.has(childAuth.client_token)).toBe(false);
    expect(vault.state.dynamic.leases.get(lease.leaseId!)?.revokedMs).toBeNumber();
    expect(vault.state.dynamic.leases.get(kept.lease.leaseId!)?.revokedMs).toBeUndefined();
  });
});
