// The Azure Key Vault provider: the real @azure/keyvault-secrets and @azure/identity inside the
// real `dso provider azure` child, against the local Key Vault + Entra ID emulator over TLS.
import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TokenCredential } from "@azure/identity";
import { parseAzureSettings } from "../../providers/azure/config.ts";
import {
  changeFingerprint,
  chooseStrategy,
  currentVersion,
  SETTLE_WINDOW_MS,
} from "../../providers/azure/fingerprint.ts";
import { azureProvider, createAzureClient } from "../../providers/azure/index.ts";
import { keyVaultName, secretValue } from "../../providers/azure/secrets.ts";
import type { ProviderContext } from "../../providers/types.ts";
import { encodeFrame, readFrames } from "../../src/rpc/framing.ts";
import { FRAME_LIMITS, type ConfigureParams } from "../../src/rpc/protocol.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { startAzureServer, type AzureServer } from "../support/azure-server.ts";

const PLANTED_VALUE = "planted-Azure-Value-7319";
const WRONG_SECRET = "planted-Wrong-Client-Secret-5521";
const TOKEN_VALID_MS = 3_600_000;
const MAIN = join(import.meta.dir, "../../src/main.ts");

let server: AzureServer;
beforeAll(async () => {
  server = await startAzureServer();
});
afterAll(() => server.stop());
beforeEach(() => {
  server.state.secrets.clear();
  server.state.calls = {};
  server.state.failAuth = false;
  server.state.delayMs = 0;
  server.state.throttleNext(0);
});

const calls = (op: string) => server.state.calls[op] ?? 0;

function configureParams(overrides: Partial<ConfigureParams> = {}): Omit<ConfigureParams, "credentials"> {
  return {
    name: "kv",
    type: "azure",
    auth: { method: "client_secret", params: { tenant_id: server.tenantId, client_id: server.clientId } },
    config: { vault_url: server.url, authority_host: server.authorityHost, disable_challenge_resource_verification: "true" },
    ...overrides,
  };
}

/** The real child; the emulator's CA reaches it through NODE_EXTRA_CA_CERTS, the secret through configure. */
function azureProcess(options: { clientSecret?: string; configure?: Partial<ConfigureParams> } = {}) {
  return new ProviderProcess({
    configure: configureParams(options.configure),
    env: {
      PATH: process.env.PATH,
      NODE_EXTRA_CA_CERTS: server.certPath,
      AZURE_CLIENT_SECRET: options.clientSecret ?? server.clientSecret,
    },
  });
}

async function withProcess<T>(p: ProviderProcess, body: (p: ProviderProcess) => Promise<T>): Promise<T> {
  try {
    return await body(p);
  } finally {
    await p.stop();
  }
}

/** Moves a secret's current version back in time, as if written long before this poll. */
function backdate(name: string, ms = 2 * SETTLE_WINDOW_MS) {
  for (const v of server.state.secrets.get(name) ?? []) {
    v.created = new Date(v.created.getTime() - ms);
    v.updated = new Date(v.updated.getTime() - ms);
  }
}

describe("azure provider against the Key Vault emulator", () => {
  test("fetch gives a JSON object's keys, a plain value as `value`, `_` mapped to `-`, a missing secret in-band", async () => {
    server.state.setSecret("db-creds", JSON.stringify({ user: "app", password: PLANTED_VALUE, port: 5432 }));
    const plainVersion = server.state.setSecret("api-key", "plain-text");
    await withProcess(azureProcess(), async (p) => {
      const items = legacyItems(await p.fetch([{ name: "db_creds" }, { name: "api-key" }, { name: "absent" }]));
      expect(items[0]?.value).toEqual({ data: { user: "app", password: PLANTED_VALUE, port: "5432" }, encoding: "utf8" });
      expect(items[1]).toMatchObject({ version: plainVersion, value: { data: { value: "plain-text" }, encoding: "utf8" } });
      expect(items[2]?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(items[2]?.error?.message).toContain('"absent"');
    });
  }, 20_000);

  test("fingerprint detects a change with zero value reads on the server", async () => {
    server.state.setSecret("rotating", "one");
    backdate("rotating");
    await withProcess(azureProcess(), async (p) => {
      const [before] = await p.fingerprint([{ name: "rotating" }]);
      expect(before?.fingerprint).toMatch(/^updated:\d+$/);
      const [same] = await p.fingerprint([{ name: "rotating" }]);
      expect(same?.fingerprint).toBe(before!.fingerprint!);

      server.state.setSecret("rotating", "two");
      const [after] = await p.fingerprint([{ name: "rotating" }]);
      expect(after?.fingerprint).not.toBe(before!.fingerprint!);
      expect(calls("getSecret")).toBe(0);
      expect(calls("listVersions") + calls("listSecrets")).toBe(3);

      // The value read afterwards carries the same fingerprint, so the agent stores a matching pair.
      const [fetched] = legacyItems(await p.fetch([{ name: "rotating" }]));
      expect(fetched?.fingerprint).toBe(after!.fingerprint!);
      expect(fetched?.value?.data.value).toBe("two");
    });
  }, 20_000);

  test("a 1,000-secret poll costs 40 vault-list calls and reads no value; then few secrets go one by one", async () => {
    const refs = Array.from({ length: 1000 }, (_, i) => ({ name: `app_secret_${i}` }));
    for (const ref of refs) server.state.setSecret(ref.name.replaceAll("_", "-"), `v-${ref.name}`);
    await withProcess(azureProcess(), async (p) => {
      const items = await p.fingerprint(refs);
      expect(items).toHaveLength(1000);
      expect(items.every((item, i) => item.ref.name === refs[i]!.name && item.fingerprint?.startsWith("updated:"))).toBe(true);
      expect(calls("listSecrets")).toBe(40);
      expect(calls("listVersions")).toBe(0);
      expect(calls("getSecret")).toBe(0);

      // The vault now costs 40 calls to list; 5 secrets are cheaper through their version lists.
      server.state.calls = {};
      const few = await p.fingerprint(refs.slice(0, 5));
      expect(few.map((i) => i.fingerprint)).toEqual(items.slice(0, 5).map((i) => i.fingerprint));
      expect(server.state.calls).toMatchObject({ listVersions: 5 });
      expect(calls("listSecrets") + calls("getSecret")).toBe(0);
    });
  }, 60_000);

  test("a missing secret is an in-band SECRET_NOT_FOUND on both poll paths; the others are answered", async () => {
    for (let i = 0; i < 4; i++) server.state.setSecret(`present-${i}`, "x");
    const refs = [{ name: "present-0" }, { name: "missing" }, { name: "present-1" }, { name: "bad/name" }];
    await withProcess(azureProcess(), async (p) => {
      const byVersions = await p.fingerprint(refs.slice(0, 2));
      expect(calls("listVersions")).toBe(1); // "missing" answered 404, which the emulator does not count
      expect(byVersions.map((i) => i.error?.code ?? "ok")).toEqual(["ok", "SECRET_NOT_FOUND"]);
      const byList = await p.fingerprint([...refs, { name: "present-2" }, { name: "present-3" }]);
      expect(calls("listSecrets")).toBe(1);
      expect(byList.map((i) => i.error?.code ?? "ok")).toEqual(["ok", "SECRET_NOT_FOUND", "ok", "SECRET_NOT_FOUND", "ok", "ok"]);
      expect(byList[1]?.error?.message).toContain('"missing"');
    });
  }, 20_000);

  test("the default method tries the service principal the agent has a secret for, tenant and client from env", async () => {
    server.state.setSecret("one", "via-default");
    const p = new ProviderProcess({
      configure: configureParams({ auth: undefined }),
      env: {
        PATH: process.env.PATH,
        NODE_EXTRA_CA_CERTS: server.certPath,
        AZURE_TENANT_ID: server.tenantId,
        AZURE_CLIENT_ID: server.clientId,
        AZURE_CLIENT_SECRET: server.clientSecret,
      },
    });
    await withProcess(p, async () => {
      const [item] = legacyItems(await p.fetch([{ name: "one" }]));
      expect(item?.value?.data.value).toBe("via-default");
      expect(calls("token")).toBe(1);
    });
  }, 20_000);

  test("a pinned version fingerprints as its id, fetches its own value, and a disabled version is not found", async () => {
    const v1 = server.state.setSecret("pinned", "first");
    server.state.setSecret("pinned", "second");
    await withProcess(azureProcess(), async (p) => {
      const [fp] = await p.fingerprint([{ name: "pinned", version: v1 }]);
      expect(fp?.fingerprint).toBe(`version:${v1}`);
      const [item] = legacyItems(await p.fetch([{ name: "pinned", version: v1 }]));
      expect(item).toMatchObject({ fingerprint: `version:${v1}`, version: v1, value: { data: { value: "first" } } });

      server.state.setSecret("pinned", "third");
      const [stillPinned, followed] = await p.fingerprint([{ name: "pinned", version: v1 }, { name: "pinned" }]);
      expect(stillPinned?.fingerprint).toBe(`version:${v1}`);
      expect(followed?.fingerprint).toMatch(/^updated:/);

      server.state.secrets.get("pinned")![0]!.enabled = false;
      const [disabled] = await p.fingerprint([{ name: "pinned", version: v1 }]);
      expect(disabled?.error).toMatchObject({ code: "SECRET_NOT_FOUND" });
      expect(disabled?.error?.message).toContain("disabled");
      const [notFetched] = legacyItems(await p.fetch([{ name: "pinned", version: v1 }]));
      expect(notFetched?.error?.code).toBe("SECRET_NOT_FOUND");

      const [unknown, staged] = await p.fingerprint([{ name: "pinned", version: "0".repeat(32) }, { name: "pinned", stage: "AWSCURRENT" }]);
      expect(unknown?.error?.code).toBe("SECRET_NOT_FOUND");
      expect(staged?.error?.code).toBe("CONFIG_INVALID");
      expect(calls("getSecret")).toBe(2);
    });
  }, 20_000);

  test("ClientSecretCredential asks the token endpoint once per process for many calls", async () => {
    server.state.setSecret("one", "1");
    await withProcess(azureProcess(), async (p) => {
      for (let i = 0; i < 3; i++) await p.fingerprint([{ name: "one" }]);
      expect(await p.health()).toEqual({ ok: true });
      expect(calls("token")).toBe(1);
      // Each fetch runs in a short-lived process of its own (its values die with it): one token each.
      for (let i = 0; i < 2; i++) legacyItems(await p.fetch([{ name: "one" }]));
      expect(calls("token")).toBe(3);
      expect(calls("challenge")).toBe(3);
      expect(calls("getSecret")).toBe(2);
    });
  }, 20_000);

  test("a few 429s are retried after Retry-After and the call succeeds", async () => {
    server.state.setSecret("busy", "ok");
    await withProcess(azureProcess(), async (p) => {
      await p.health(); // token and challenge out of the way
      server.state.calls = {};
      server.state.throttleNext(2, 1);
      const started = performance.now();
      const [item] = legacyItems(await p.fetch([{ name: "busy" }]));
      expect(item?.value?.data.value).toBe("ok");
      expect(calls("throttled")).toBe(2);
      expect(calls("getSecret")).toBe(1);
      expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
    });
  }, 20_000);

  test("sustained throttling ends in PROVIDER_THROTTLED with the server's Retry-After, within the budget", async () => {
    server.state.setSecret("busy", "ok");
    await withProcess(azureProcess(), async (p) => {
      await p.health();
      server.state.calls = {};
      server.state.throttleNext(1000, 1);
      await expect(p.fingerprint([{ name: "busy" }])).rejects.toMatchObject({ code: "PROVIDER_THROTTLED", retryAfterMs: 1000 });
      expect(calls("throttled")).toBe(5); // the first try and MAX_RETRIES retries, 1 s apart

      // A server asking for longer than the budget is not waited for at all.
      server.state.calls = {};
      server.state.throttleNext(1000, 120);
      const started = performance.now();
      await expect(p.fetch([{ name: "busy" }])).rejects.toMatchObject({ code: "PROVIDER_THROTTLED", retryAfterMs: 120_000 });
      expect(performance.now() - started).toBeLessThan(2000);
      expect(calls("throttled")).toBe(1);
    });
  }, 30_000);

  test("a wrong client secret is PROVIDER_AUTH naming the provider, without the secret", async () => {
    server.state.setSecret("db", PLANTED_VALUE);
    await withProcess(azureProcess({ clientSecret: WRONG_SECRET }), async (p) => {
      const error = await p.fetch([{ name: "db" }]).then(() => undefined, (e: Error & { code?: string }) => e);
      expect(error?.code).toBe("PROVIDER_AUTH");
      expect(error?.message).toMatch(/^provider kv \(azure\): /);
      expect(error?.message).not.toContain(WRONG_SECRET);
      expect(error?.message).not.toContain(PLANTED_VALUE);
      expect(error?.message).not.toMatch(/AADSTS|[0-9a-f]{8}-[0-9a-f]{4}-/i);
      expect(calls("getSecret")).toBe(0);
      const health = await p.health();
      expect(health.ok).toBe(false);
      expect(health.message).toContain("PROVIDER_AUTH");
    });
  }, 20_000);

  test("the vault refusing a valid token is PROVIDER_AUTH, without the token", async () => {
    server.state.setSecret("db", PLANTED_VALUE);
    await withProcess(azureProcess(), async (p) => {
      await p.health();
      const issued = [...server.state.acceptedTokens].filter((t) => t.startsWith("aad-"));
      server.state.failAuth = true;
      const error = await p.fingerprint([{ name: "db" }]).then(() => undefined, (e: Error & { code?: string }) => e);
      expect(error?.code).toBe("PROVIDER_AUTH");
      expect(error?.message).toMatch(/^provider kv \(azure\): /);
      expect(error?.message).toContain("HTTP 401");
      for (const token of issued) expect(error?.message).not.toContain(token);
    });
  }, 20_000);

  test("bad configuration fails configure naming the dso.yaml field", async () => {
    const cases: Array<[Partial<ConfigureParams>, string]> = [
      [{ config: { vault_url: "http://127.0.0.1:1" } }, "providers.kv.config.vault_url: must be an https:// URL"],
      [{ config: {} }, "providers.kv.config.vault_url: required"],
      [{ config: { vault_url: server.url, vault_name: "x" } }, "providers.kv.config.vault_name: unknown key"],
      [{ config: { vault_url: server.url }, auth: { method: "kubernetes" } }, "providers.kv.auth.method: unknown method"],
    ];
    for (const [overrides, message] of cases) {
      await withProcess(azureProcess({ configure: overrides }), async (p) => {
        await expect(p.fingerprint([{ name: "x" }])).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining(message) });
      });
    }
  }, 30_000);

  test("the client secret reaches the child through configure, never its environment or argv", async () => {
    server.state.setSecret("db", "x");
    await withProcess(azureProcess(), async (p) => {
      await p.fingerprint([{ name: "db" }]);
      const pid = p.getStatus().pid!;
      expect(readFileSync(`/proc/${pid}/environ`, "utf8")).not.toContain(server.clientSecret);
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).not.toContain(server.clientSecret);
      expect(calls("token")).toBe(1);
    });
  }, 20_000);

  test("no planted value or credential appears on the child's stderr log channel", async () => {
    server.state.setSecret("db-creds", JSON.stringify({ password: PLANTED_VALUE }));
    const child = Bun.spawn([process.execPath, MAIN, "provider", "azure"], {
      env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: server.certPath, DSO_LOG_LEVEL: "debug" },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const stderr = new Response(child.stderr).text();
    const frames = readFrames(child.stdout, FRAME_LIMITS);
    const next = async () => (await frames.next()).value as { value?: unknown; raw?: Uint8Array };
    const send = (message: unknown) => {
      child.stdin.write(encodeFrame(message));
      child.stdin.flush();
    };
    await next(); // hello
    send({ id: 1, method: "configure", params: { ...configureParams(), credentials: { AZURE_CLIENT_SECRET: server.clientSecret } } });
    expect((await next()).value).toEqual({ id: 1, result: { ok: true } });
    send({ id: 2, method: "fingerprint", params: { refs: [{ name: "db_creds" }, { name: "gone" }] } });
    await next();
    send({ id: 3, method: "fetch", params: { refs: [{ name: "db_creds" }] } });
    const fetched = await next();
    // The value is in the frame's raw section, not its JSON.
    expect(JSON.stringify(fetched.value)).not.toContain(PLANTED_VALUE);
    expect(new TextDecoder().decode(fetched.raw)).toContain(PLANTED_VALUE);
    send({ id: 4, method: "shutdown" });
    child.stdin.end();
    expect(await child.exited).toBe(0);
    const log = await stderr;
    expect(log).toContain("azure poll"); // the channel was in use
    expect(log).not.toContain(PLANTED_VALUE);
    expect(log).not.toContain(server.clientSecret);
    for (const token of server.state.acceptedTokens) expect(log).not.toContain(token);
  }, 20_000);
});

describe("azure provider in process", () => {
  const ctx: ProviderContext = {
    log: { debug() {}, info() {}, warn() {}, error() {} },
    env: {},
  };

  test("any TokenCredential works: asked for the vault scope the challenge named", async () => {
    server.state.setSecret("custom", "via-custom-credential");
    const scopes: string[][] = [];
    const credential: TokenCredential = {
      async getToken(scope) {
        scopes.push([scope].flat());
        return { token: server.accessToken, expiresOnTimestamp: Date.now() + TOKEN_VALID_MS };
      },
    };
    const settings = parseAzureSettings({ name: "kv", type: "azure", config: { vault_url: server.url, disable_challenge_resource_verification: "true" } }, {});
    const client = createAzureClient(settings, ctx, credential, { tlsCa: server.certPem });
    const signal = new AbortController().signal;
    const [item] = legacyItems(await client.fetch([{ name: "custom" }], signal));
    expect(item?.value?.data.value).toBe("via-custom-credential");
    const [fp] = await client.fingerprint([{ name: "custom" }], signal);
    expect(fp?.fingerprint).toBe(item!.fingerprint!);
    expect(scopes[0]).toEqual(["https://vault.azure.net/.default"]);
    expect(calls("token")).toBe(0);
  });

  test("client_secret without AZURE_CLIENT_SECRET, tenant or client id is a config error", async () => {
    const base = { name: "kv", type: "azure", config: { vault_url: server.url } };
    await expect(azureProvider.create({ ...base, auth: { method: "service_principal", params: { tenant_id: "t", client_id: "c" } } }, ctx)).rejects.toThrow(
      "providers.kv.auth: client_secret needs AZURE_CLIENT_SECRET",
    );
    await expect(azureProvider.create({ ...base, auth: { method: "client_secret" } }, ctx)).rejects.toThrow("providers.kv.auth.params.tenant_id");
    await expect(azureProvider.create({ ...base, auth: { method: "managed_identity", params: { tenant_id: "t" } } }, ctx)).rejects.toThrow(
      "providers.kv.auth.params.tenant_id: unknown key",
    );
    // Tenant and client id may come from the environment, as for the Azure SDKs.
    const settings = parseAzureSettings(
      { ...base, auth: { method: "client_secret" }, credentials: { AZURE_CLIENT_SECRET: "s" } },
      { AZURE_TENANT_ID: "t", AZURE_CLIENT_ID: "c" },
    );
    expect(settings.auth).toEqual({ method: "client_secret", tenantId: "t", clientId: "c", clientSecret: "s" });
  });
});

describe("azure provider rules", () => {
  test("the fingerprint settles a minute after the change date, so same-second writes are looked at again", () => {
    const changed = new Date("2030-01-01T00:00:00.400Z");
    expect(changeFingerprint(changed, changed.getTime() + 1_000)).toBe("updated:1893456000~settling");
    expect(changeFingerprint(changed, changed.getTime() + SETTLE_WINDOW_MS)).toBe("updated:1893456000");
  });

  test("the cheaper of vault list and version lists is chosen", () => {
    expect(chooseStrategy(3, undefined)).toBe("per-secret");
    expect(chooseStrategy(4, undefined)).toBe("vault-list");
    expect(chooseStrategy(5, 40)).toBe("per-secret");
    expect(chooseStrategy(40, 40)).toBe("vault-list");
    expect(chooseStrategy(2, 1)).toBe("vault-list");
  });

  test("the current version is the most recently created", () => {
    const at = (s: number) => new Date(s * 1000);
    expect(currentVersion([{ name: "a", version: "old", createdOn: at(1) }, { name: "a", version: "new", createdOn: at(2) }, { name: "a", version: "mid", createdOn: at(1.5) }])?.version).toBe("new");
  });

  test("names map `_` to `-` and refuse what Key Vault cannot hold", () => {
    expect(keyVaultName("db_password")).toBe("db-password");
    expect(keyVaultName("a/b")).toBeUndefined();
    expect(keyVaultName("x".repeat(128))).toBeUndefined();
  });

  test("a certificate's PKCS#12 secret is binary; other content types stay text", () => {
    expect(secretValue("MIIKAgEDMA==", "application/x-pkcs12")).toEqual({ data: { value: "MIIKAgEDMA==" }, encoding: "base64" });
    expect(secretValue("raw bytes?", "application/octet-stream")).toEqual({ data: { value: "raw bytes?" }, encoding: "utf8" });
    expect(secretValue("[1,2]", undefined)).toEqual({ data: { value: "[1,2]" }, encoding: "utf8" });
    expect(secretValue("{}", undefined)).toEqual({ data: { value: "{}" }, encoding: "utf8" });
  });
});
