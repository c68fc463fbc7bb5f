// `dso doctor`'s check that the Vault token outlives its leases, through the real vault provider
// process against the Vault wire server (auth/token/lookup-self): periodic passes, a child token fails.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/index.ts";
import { checkLeaseTokens, tokenVerdict } from "../../src/doctor/lease-token.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";

let vault: VaultServer;
beforeAll(async () => {
  vault = await startVaultServer({ engines: { database: { type: "database", roles: { app: { defaultTtl: 60, maxTtl: 120 } } } } });
});
afterAll(() => vault.stop());

async function token(by: string, body: object): Promise<string> {
  const response = await fetch(`${vault.url}/v1/auth/token/create`, { method: "POST", headers: { "x-vault-token": by }, body: JSON.stringify(body) });
  return ((await response.json()) as { auth: { client_token: string } }).auth.client_token;
}

describe("dso doctor: the Vault token outlives its leases", () => {
  test("a periodic orphan token passes; a child token with a TTL fails, naming what to do", async () => {
    const { config } = parseConfig(`providers:\n  vault:\n    type: vault\n    config: { address: "${vault.url}" }\nsecrets:\n  - name: db\n    dynamic: { path: database/creds/app }\n`, "dso.yaml", {});
    const periodic = await token(vault.state.rootToken, { period: "1h", no_parent: true, policies: ["root"] });
    const [ok] = await checkLeaseTokens(config, { PATH: process.env.PATH, VAULT_TOKEN: periodic });
    expect([ok!.check, ok!.status]).toEqual(["vault token (vault)", "ok"]);
    expect(ok!.detail).toContain("periodic (3600 s)");
    const parent = await token(vault.state.rootToken, { ttl: "1h", policies: ["root"] });
    const child = await token(parent, { ttl: "1h" });
    const [result] = await checkLeaseTokens(config, { PATH: process.env.PATH, VAULT_TOKEN: child });
    const { status, detail } = result!;
    expect(status).toBe("fail");
    expect(detail).toContain("neither periodic nor an orphan");
    expect(detail).not.toContain(child);
  });

  test("no dynamic secret, no check; an orphan with a TTL warns", async () => {
    expect(await checkLeaseTokens(parseConfig("secrets: []\n", "dso.yaml", {}).config, {})).toEqual([]);
    expect(tokenVerdict("v", { ttlSeconds: 600, renewable: true, orphan: true }).status).toBe("warn");
  });
});
