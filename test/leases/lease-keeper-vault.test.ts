// The lease keeper with real `dso provider vault` processes against the Vault wire server: the
// value comes from the short-lived fetch child, renewals and revocations from the long-lived one,
// every lease owned by the agent's periodic orphan token. Short TTLs (3-4 s), real clock. The
// renewal and replacement over time is in test/e2e/leases.test.ts (and, clocked, lease-keeper.test.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { LeaseSpec } from "../../src/config/lease-spec.ts";
import type { SecretSpec } from "../../src/config/types.ts";
import { fileLeaseBook, type LeaseBook } from "../../src/leases/lease-book.ts";
import { LeaseKeeper, type LeaseEvents } from "../../src/leases/lease-keeper.ts";
import { providerLeaseBackend } from "../../src/leases/provider-backend.ts";
import { DsoError } from "../../src/errors.ts";
import { log as rootLog } from "../../src/log/logger.ts";
import { FetchChild } from "../../src/rpc/fetch-child.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { wipeSecretBytes } from "../../src/rpc/wire-values.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";

let vault: VaultServer;
let agentToken: string;
let dir: string;

beforeAll(async () => {
  vault = await startVaultServer({ engines: { database: { type: "database", roles: { app: { defaultTtl: 3, maxTtl: 4 }, long: { defaultTtl: 30, maxTtl: 60 } } } } });
  const created = await fetch(`${vault.url}/v1/auth/token/create`, { method: "POST", headers: { "x-vault-token": vault.state.rootToken }, body: JSON.stringify({ period: "1h", no_parent: true, policies: ["root"] }) });
  agentToken = ((await created.json()) as { auth: { client_token: string } }).auth.client_token;
  dir = mkdtempSync(join("/dev/shm", "dso-leases-"));
});
afterAll(async () => {
  await vault.stop();
  rmSync(dir, { recursive: true, force: true });
});

function dynamicSpec(role: string, over: Partial<LeaseSpec> = {}): SecretSpec & { lease: LeaseSpec } {
  return {
    name: `db-${role}`, provider: "vault", inject: { type: "env" }, targets: { containers: [], labels: {}, volumes: [] }, mappings: {},
    rotation: { enabled: true, strategy: "signal", signal: "SIGHUP", healthCheckTimeoutMs: 1000 },
    lease: { engine: "database", kind: "creds", role, params: {}, scope: "container", renewAt: 2 / 3, reissueMargin: 0.15, revokeOnRemove: true, revokeGraceMs: 300, ...over },
  };
}

function agent(book: LeaseBook, specs: Array<SecretSpec & { lease: LeaseSpec }>) {
  const provider = new ProviderProcess({
    configure: { name: "vault", type: "vault", config: { address: vault.url } },
    env: { PATH: process.env.PATH, VAULT_TOKEN: agentToken },
  });
  const events: Array<[keyof LeaseEvents, ...unknown[]]> = [];
  const announced: string[] = [];
  const on = (name: keyof LeaseEvents) => (...args: unknown[]) => events.push([name, ...args]);
  const keeper = new LeaseKeeper({
    spec: (name) => specs.find((s) => s.name === name),
    backend: () => providerLeaseBackend(provider),
    book,
    fingerprint: (key) => Bun.hash(key).toString(16),
    onReplaceWanted: (names) => announced.push(...names),
    events: { issued: on("issued"), renewed: on("renewed"), revoked: on("revoked"), failed: on("failed"), alarm: on("alarm") },
  });
  return { provider, keeper, events, announced, stop: async () => (await keeper.stop(), await provider.stop()) };
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
async function until(check: () => boolean, ms: number) {
  for (const end = Date.now() + ms; !check() && Date.now() < end; ) await Bun.sleep(25);
}

describe("lease keeper with the vault provider processes", () => {
  test("two containers get two distinct credentials, both leases the agent token's; the token is periodic and an orphan", async () => {
    const a = agent(fileLeaseBook(join(dir, "two.json")), [dynamicSpec("long")]);
    try {
      const one = await a.keeper.credential("db-long", "container-1");
      const two = await a.keeper.credential("db-long", "container-2");
      expect(text(one.value.get("username"))).not.toBe(text(two.value.get("username")));
      const leases = vault.state.dynamic.activeLeases().filter((l) => l.path === "database/creds/long");
      expect(leases).toHaveLength(2);
      expect(new Set(leases.map((l) => l.tokenId))).toEqual(new Set([agentToken]));
      expect((await a.provider.lease({ op: "token" })).token).toMatchObject({ orphan: true, periodSeconds: 3600 });
      // The book holds metadata only, root-only.
      const book = await Bun.file(join(dir, "two.json")).text();
      expect(book).toContain(leases[0]!.id);
      expect(book).not.toContain(text(one.value.get("password")));
      expect(statSync(join(dir, "two.json")).mode & 0o777).toBe(0o600);
    } finally {
      await a.stop();
    }
  });

  test("an agent restart renews from the book and issues nothing; removal revokes within the grace period", async () => {
    const bookPath = join(dir, "restart.json");
    const spec = dynamicSpec("long", { renewAt: 0.01, reissueMargin: 0.15 });
    const before = agent(fileLeaseBook(bookPath), [spec]);
    await before.keeper.credential("db-long", "c1");
    const fingerprint = before.keeper.fingerprintFor("db-long", "c1");
    await before.stop();
    const issuedBefore = vault.state.dynamic.calls.creds ?? 0;

    const after = agent(fileLeaseBook(bookPath), [spec]);
    try {
      await after.keeper.load();
      expect(after.keeper.fingerprintFor("db-long", "c1")).toBe(fingerprint);
      await Bun.sleep(400);
      await after.keeper.tick(); // past 1 % of the lease: due for renewal
      expect(after.events.map(([e]) => e)).toEqual(["renewed"]);
      expect(vault.state.dynamic.calls.creds ?? 0).toBe(issuedBefore);

      const lease = vault.state.dynamic.activeLeases().filter((l) => l.path === "database/creds/long").sort((x, y) => x.issuedMs - y.issuedMs).at(-1);
      after.keeper.run();
      const removedAt = Date.now();
      after.keeper.consumerRemoved("c1");
      await until(() => vault.state.dynamic.leases.get(lease!.id)!.revokedMs !== undefined, 2_000);
      const revokedAfter = vault.state.dynamic.leases.get(lease!.id)!.revokedMs! - removedAt;
      expect(revokedAfter).toBeGreaterThanOrEqual(300);
      expect(revokedAfter).toBeLessThan(1_000);
    } finally {
      await after.stop();
    }
  });

  test("after a restart a lease Vault no longer knows (revoked with its token meanwhile) is replaced, not renewed", async () => {
    const bookPath = join(dir, "gone.json");
    const spec = dynamicSpec("long");
    const before = agent(fileLeaseBook(bookPath), [spec]);
    await before.keeper.credential("db-long", "c9");
    await before.stop();
    const lease = vault.state.dynamic.leases.get([...vault.state.dynamic.leases.keys()].at(-1)!)!;
    lease.revokedMs = Date.now(); // an operator revoked it while no agent ran
    const after = agent(fileLeaseBook(bookPath), [spec]);
    try {
      await after.keeper.load();
      await after.keeper.tick();
      expect(after.announced).toEqual(["db-long"]);
      expect(after.events.filter(([e]) => e === "alarm")).toEqual([]);
      expect(after.keeper.fingerprintFor("db-long", "c9")).toEndWith(":replace");
    } finally {
      await after.stop();
    }
  });

  test("a Vault outage longer than the lease raises the alarm before expiry", async () => {
    const a = agent(fileLeaseBook(join(dir, "outage.json")), [dynamicSpec("app")]);
    try {
      await a.keeper.credential("db-app", "c1");
      await a.provider.health(); // the long-lived process is up, as in a running agent
      const lease = vault.state.dynamic.activeLeases().filter((l) => l.path === "database/creds/app").sort((x, y) => x.issuedMs - y.issuedMs).at(-1);
      vault.state.unavailable = true;
      a.keeper.run();
      await until(() => a.events.some(([e]) => e === "alarm"), 3_000);
      const alarm = a.events.find(([e]) => e === "alarm")!;
      expect(Date.now()).toBeLessThan(lease!.expiresMs);
      expect(alarm[4] as number).toBeGreaterThan(0.3);
    } finally {
      vault.state.unavailable = false;
      await a.stop();
    }
  });

  test("fetch processes use the long-lived process's AppRole token: 4 fetches and an issue, 1 login; the lease outlives a fetch process's token TTL", async () => {
    // A 2 s AppRole token: the long-lived process renews it; a token a fetch process logged in
    // with would expire (and Vault revoke its leases) 2 s later.
    vault.state.addAppRole({ roleId: "dso-role", secretId: "dso-secret-id", policies: ["root"], tokenTtlSeconds: 2 });
    vault.state.writeSecret("secret/static", { key: "static-value" });
    const loginsBefore = vault.state.calls.login ?? 0;
    const lookupsBefore = vault.state.calls.lookupSelf ?? 0;
    const provider = new ProviderProcess({
      configure: { name: "vault", type: "vault", auth: { method: "approle", params: { role_id: "dso-role", secret_id: "dso-secret-id" } }, config: { address: vault.url } },
      env: { PATH: process.env.PATH },
    });
    try {
      for (let i = 0; i < 4; i++) {
        const [item] = await provider.fetch([{ name: "static" }]);
        expect(text(item!.value?.get("key"))).toBe("static-value");
        wipeSecretBytes(item!.value);
      }
      // The lent token reaches the fetch process over its stdin only: not in its argv or environment.
      const lent = [...vault.state.tokens.values()].find((t) => t.creationTtl === 2)!.id;
      vault.state.delayMs = 400;
      const slow = provider.fetch([{ name: "static" }]);
      let pid: number | undefined;
      await until(() => (pid = provider.getStatus().fetchPid) !== undefined, 3_000);
      const environ = readFileSync(`/proc/${pid}/environ`, "latin1");
      expect(environ).toContain("PATH="); // positive control: it was read
      expect(environ).not.toContain(lent);
      expect(readFileSync(`/proc/${pid}/cmdline`, "latin1")).not.toContain(lent);
      wipeSecretBytes((await slow)[0]!.value);
      vault.state.delayMs = 0;

      const issued = await provider.issue({ ref: { name: "db-long" }, engine: "database", kind: "creds", role: "long", params: {} });
      wipeSecretBytes(issued.item.value);
      expect((vault.state.calls.login ?? 0) - loginsBefore).toBe(1);
      expect((vault.state.calls.lookupSelf ?? 0) - lookupsBefore).toBe(1); // the long-lived process's, at its login
      const lease = vault.state.dynamic.leases.get(issued.lease.leaseId!)!;
      const owner = vault.state.tokens.get(lease.tokenId);
      expect(owner?.creationTtl).toBe(2); // the AppRole token, not the root one

      await Bun.sleep(2_600); // past the 2 s TTL: only a renewed token is still alive
      expect((await provider.lease({ op: "lookup", leaseId: lease.id })).valid).toBe(true);
      expect(vault.state.tokens.has(lease.tokenId)).toBe(true);
      expect(lease.revokedMs).toBeUndefined();
      expect((vault.state.calls.login ?? 0) - loginsBefore).toBe(1);
    } finally {
      vault.state.delayMs = 0;
      await provider.stop();
    }
  });

  test("a static fetch does not wait out the long-lived process's restart backoff: it logs in itself at once", async () => {
    vault.state.addAppRole({ roleId: "dso-role", secretId: "dso-secret-id", policies: ["root"], tokenTtlSeconds: 60 });
    vault.state.writeSecret("secret/static", { key: "static-value" });
    const provider = new ProviderProcess({
      configure: { name: "vault", type: "vault", auth: { method: "approle", params: { role_id: "dso-role", secret_id: "dso-secret-id" } }, config: { address: vault.url } },
      env: { PATH: process.env.PATH },
      // The first restart waits 60 s: longer than this test's timeout.
      backoffBaseMs: 60_000,
    });
    try {
      await provider.health();
      const pid = provider.getStatus().pid!;
      process.kill(pid, "SIGKILL");
      await until(() => provider.getStatus().state === "idle", 5_000);
      const [item] = await provider.fetch([{ name: "static" }]);
      expect(text(item!.value?.get("key"))).toBe("static-value");
      wipeSecretBytes(item!.value);
      // The long-lived process was not waited for: it is still down, in its backoff.
      expect(provider.getStatus().state).not.toBe("ready");
    } finally {
      await provider.stop();
    }
  }, 20_000);

  test("when the long-lived process cannot lend its token, a static fetch logs in itself and an issue is refused", async () => {
    vault.state.addAppRole({ roleId: "dso-role", secretId: "dso-secret-id", policies: ["root"], tokenTtlSeconds: 60 });
    vault.state.writeSecret("secret/static", { key: "static-value" });
    const logins = () => vault.state.calls.login ?? 0;
    const before = logins();
    const child = new FetchChild(
      {
        configure: { name: "vault", type: "vault", auth: { method: "approle", params: { role_id: "dso-role", secret_id: "dso-secret-id" } }, config: { address: vault.url } },
        env: { PATH: process.env.PATH },
        log: rootLog.withTag("test"),
        callTimeoutMs: 10_000,
        startTimeoutMs: 10_000,
      },
      () => {},
      async () => {
        throw new DsoError("PROVIDER_UNAVAILABLE", "provider vault is not running");
      },
    );
    try {
      const [item] = await child.fetch([{ name: "static" }]);
      expect(text(item!.value?.get("key"))).toBe("static-value");
      wipeSecretBytes(item!.value);
      expect(logins() - before).toBe(1);
      const issuesBefore = vault.state.dynamic.calls.creds ?? 0;
      await expect(child.issue({ ref: { name: "db-long" }, engine: "database", kind: "creds", role: "long", params: {} })).rejects.toThrow("not running");
      expect(vault.state.dynamic.calls.creds ?? 0).toBe(issuesBefore);
    } finally {
      await child.stop();
    }
  });
});
