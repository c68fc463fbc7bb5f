// Drives the real node-vault client against the local Vault emulator.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import vault from "node-vault";
import { startVaultServer, type VaultServer } from "./vault-server.ts";

let server: VaultServer;
beforeAll(async () => {
  server = await startVaultServer();
  server.state.policies.set("app-reader", [
    { path: "secret/data/app/*", capabilities: ["read"] },
    { path: "secret/metadata/app/*", capabilities: ["read", "list"] },
  ]);
  server.state.policies.set("app-drift", [{ path: "secret/metadata/app/*", capabilities: ["read", "list"] }]);
});
afterAll(async () => { await server.stop(); });

const client = (token?: string, extra: Record<string, unknown> = {}) => vault({ endpoint: server.url, token, ...extra });
const statusOf = (err: unknown) => (err as { response?: { statusCode?: number } }).response?.statusCode;

describe("Vault emulator", () => {
  test("node-vault reads KV v2 data, the latest or a given version", async () => {
    server.state.writeSecret("secret/app/db", { password: "one" });
    server.state.writeSecret("secret/app/db", { password: "two" });
    const root = client(server.state.rootToken);
    const latest = await root.read("secret/data/app/db");
    expect(latest.data).toMatchObject({ data: { password: "two" }, metadata: { version: 2, destroyed: false, deletion_time: "" } });
    const first = await root.read("secret/data/app/db?version=1");
    expect(first.data.data).toEqual({ password: "one" });
  });

  test("KV v2 metadata reports current_version and every version without values", async () => {
    const before = server.state.calls.data ?? 0;
    const meta = await client(server.state.rootToken).read("secret/metadata/app/db");
    expect(meta.data.current_version).toBe(2);
    expect(Object.keys(meta.data.versions)).toEqual(["1", "2"]);
    expect(JSON.stringify(meta)).not.toContain("two");
    expect(server.state.calls.data ?? 0).toBe(before);
  });

  test("listing works with the LIST method and with ?list=true", async () => {
    server.state.writeSecret("secret/app/api/key", { k: "v" });
    const viaMethod = await client(server.state.rootToken).list("secret/metadata/app/");
    expect(viaMethod.data.keys).toEqual(["api/", "db"]);
    const viaQuery = await client(server.state.rootToken, { noCustomHTTPVerbs: true }).list("secret/metadata/app/");
    expect(viaQuery.data.keys).toEqual(["api/", "db"]);
  });

  test("KV v1 mounts store unversioned data", async () => {
    const root = client(server.state.rootToken);
    await root.write("kv/legacy/db", { user: "u" });
    expect((await root.read("kv/legacy/db")).data).toEqual({ user: "u" });
    expect((await root.list("kv/legacy/")).data.keys).toEqual(["db"]);
  });

  test("a missing secret is 404", async () => {
    const err = await client(server.state.rootToken).read("secret/data/app/none").catch((e) => e);
    expect(statusOf(err)).toBe(404);
  });

  test("approle login returns a renewable token with the role's policies", async () => {
    server.state.addAppRole({ roleId: "role-1", secretId: "secret-1", policies: ["app-reader"], tokenTtlSeconds: 600 });
    const v = client();
    const login = await v.approleLogin({ role_id: "role-1", secret_id: "secret-1" });
    expect(login.auth).toMatchObject({ renewable: true, lease_duration: 600, policies: ["default", "app-reader"] });
    expect(v.token).toBe(login.auth.client_token);
    expect((await v.read("secret/data/app/db")).data.data.password).toBe("two");
    const bad = await client().approleLogin({ role_id: "role-1", secret_id: "wrong" }).catch((e) => e);
    expect(statusOf(bad)).toBe(400);
  });

  test("a metadata-only token reads metadata but is refused data", async () => {
    const token = server.state.createToken({ policies: ["app-drift"], ttlSeconds: 600 });
    const v = client(token);
    expect((await v.read("secret/metadata/app/db")).data.current_version).toBe(2);
    const err = await v.read("secret/data/app/db").catch((e) => e);
    expect(statusOf(err)).toBe(403);
    expect(err.message).toBe("permission denied");
  });

  test("renew-self extends the TTL and is counted; an expired token is refused", async () => {
    const token = server.state.createToken({ policies: ["app-reader"], ttlSeconds: 60 });
    const v = client(token);
    expect((await v.tokenLookupSelf()).data.ttl).toBe(60);
    const renewals = server.state.calls.renewSelf ?? 0;
    const renewed = await v.tokenRenewSelf({ increment: "1h" });
    expect(renewed.auth.lease_duration).toBe(3600);
    expect(server.state.calls.renewSelf).toBe(renewals + 1);
    server.state.advanceClock(3601);
    expect(statusOf(await v.read("secret/data/app/db").catch((e) => e))).toBe(403);
  });

  test("namespaces partition secrets and tokens", async () => {
    server.state.writeSecret("secret/app/ns", { v: "in-a" }, { namespace: "team-a" });
    server.state.writeSecret("secret/app/ns", { v: "in-b" }, { namespace: "team-b/" });
    const tokenA = server.state.createToken({ policies: ["app-reader"], namespace: "team-a" });
    const inA = await client(tokenA, { namespace: "team-a" }).read("secret/data/app/ns");
    expect(inA.data.data).toEqual({ v: "in-a" });
    const inB = await client(server.state.rootToken, { namespace: "team-b" }).read("secret/data/app/ns");
    expect(inB.data.data).toEqual({ v: "in-b" });
    expect(statusOf(await client(tokenA, { namespace: "team-b" }).read("secret/data/app/ns").catch((e) => e))).toBe(403);
    expect(statusOf(await client(server.state.rootToken).read("secret/data/app/ns").catch((e) => e))).toBe(404);
  });

  test("injected faults: throttling is 429, auth failure is 403", async () => {
    const root = client(server.state.rootToken);
    server.state.throttleNext(1);
    expect(statusOf(await root.read("secret/data/app/db").catch((e) => e))).toBe(429);
    expect((await root.read("secret/data/app/db")).data.data.password).toBe("two");
    server.state.failAuth = true;
    expect(statusOf(await root.read("secret/data/app/db").catch((e) => e))).toBe(403);
    server.state.failAuth = false;
  });
});
