// Drives the real @azure/keyvault-secrets and @azure/identity against the local Key Vault emulator.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ClientSecretCredential, type TokenCredential } from "@azure/identity";
import { SecretClient } from "@azure/keyvault-secrets";
import { startAzureServer, type AzureServer } from "./azure-server.ts";

let server: AzureServer;
beforeAll(async () => { server = await startAzureServer(); });
afterAll(async () => { await server.stop(); });

const TOKEN_VALID_MS = 3_600_000;

function staticCredential(token: string): TokenCredential {
  return { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + TOKEN_VALID_MS }) };
}

// tlsOptions trusts the emulator's self-signed certificate for this client only (see azure-server.ts).
function secretClient(credential: TokenCredential) {
  return new SecretClient(server.url, credential, { disableChallengeResourceVerification: true, tlsOptions: { ca: server.certPem } });
}

function resetFaults() {
  server.state.calls = {};
  server.state.failAuth = false;
  server.state.delayMs = 0;
  server.state.throttleNext(0);
}

describe("Azure Key Vault emulator", () => {
  test("an unauthenticated request gets the 401 challenge naming tenant and resource", async () => {
    const res = await fetch(`${server.url}/secrets/x?api-version=7.6`, { tls: { ca: server.certPem } });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(`Bearer authorization="${server.url}/${server.tenantId}", resource="https://vault.azure.net"`);
  });

  test("getSecret answers the challenge with the credential's token and reads the current version", async () => {
    resetFaults();
    const first = server.state.setSecret("db-password", "one");
    const second = server.state.setSecret("db-password", "two", { contentType: "text/plain", tags: { team: "a" } });
    const kv = secretClient(staticCredential(server.accessToken));
    const secret = await kv.getSecret("db-password");
    expect(secret.value).toBe("two");
    expect(secret.properties).toMatchObject({ version: second, contentType: "text/plain", tags: { team: "a" }, enabled: true });
    expect(secret.properties.createdOn).toBeInstanceOf(Date);
    expect((await kv.getSecret("db-password", { version: first })).value).toBe("one");
    expect(server.state.calls).toMatchObject({ challenge: 1, getSecret: 2 });
  });

  test("listPropertiesOfSecretVersions follows nextLink across pages", async () => {
    resetFaults();
    const versions = Array.from({ length: 30 }, (_, i) => server.state.setSecret("many", `v${i}`));
    const kv = secretClient(staticCredential(server.accessToken));
    const seen: string[] = [];
    for await (const props of kv.listPropertiesOfSecretVersions("many")) seen.push(props.version!);
    expect(seen).toEqual(versions);
    expect(server.state.calls.listVersions).toBe(2);
    for await (const page of kv.listPropertiesOfSecretVersions("many").byPage({ maxPageSize: 10 })) expect(page).toHaveLength(10);
    expect(server.state.calls.listVersions).toBe(5);
  });

  test("listPropertiesOfSecrets lists names without values", async () => {
    resetFaults();
    const kv = secretClient(staticCredential(server.accessToken));
    const names: string[] = [];
    for await (const props of kv.listPropertiesOfSecrets()) names.push(props.name);
    expect(names).toEqual(expect.arrayContaining(["db-password", "many"]));
    expect(server.state.calls.listSecrets).toBe(1);
  });

  test("ClientSecretCredential gets its token from the emulated Entra ID endpoint", async () => {
    resetFaults();
    const credential = new ClientSecretCredential(server.tenantId, server.clientId, server.clientSecret, {
      authorityHost: server.authorityHost,
      disableInstanceDiscovery: true,
      tlsOptions: { ca: server.certPem },
    });
    const kv = secretClient(credential);
    expect((await kv.getSecret("db-password")).value).toBe("two");
    expect((await kv.getSecret("db-password")).value).toBe("two");
    expect(server.state.calls).toMatchObject({ token: 1, discovery: 1, getSecret: 2 });
  });

  test("a wrong client secret fails authentication at the token endpoint", async () => {
    resetFaults();
    const credential = new ClientSecretCredential(server.tenantId, server.clientId, "wrong-secret", {
      authorityHost: server.authorityHost,
      disableInstanceDiscovery: true,
      tlsOptions: { ca: server.certPem },
    });
    const err = await secretClient(credential).getSecret("db-password").catch((e) => e);
    expect(err.name).toBe("AuthenticationRequiredError");
    expect(server.state.calls.token).toBeGreaterThanOrEqual(1);
    expect(server.state.calls.getSecret).toBeUndefined();
  });

  test("a token the vault does not accept is a 401", async () => {
    resetFaults();
    const err = await secretClient(staticCredential("not-a-valid-token")).getSecret("db-password").catch((e) => e);
    expect(err.statusCode).toBe(401);
    expect(server.state.calls.getSecret).toBeUndefined();
  });

  test("an unknown secret is a 404 SecretNotFound", async () => {
    const err = await secretClient(staticCredential(server.accessToken)).getSecret("missing").catch((e) => e);
    expect(err).toMatchObject({ statusCode: 404, code: "SecretNotFound" });
  });

  test("a 429 with Retry-After is retried by the SDK", async () => {
    resetFaults();
    const kv = secretClient(staticCredential(server.accessToken));
    await kv.getSecret("db-password"); // complete the challenge first, so the retry is the only extra call
    server.state.throttleNext(1, 0);
    expect((await kv.getSecret("db-password")).value).toBe("two");
    expect(server.state.calls).toMatchObject({ throttled: 1, getSecret: 2 });
  });

  test("a child bun process trusts the emulator through NODE_EXTRA_CA_CERTS", async () => {
    // Connection details go over stdin: no token in the child's argv or env.
    const script = `
      const { SecretClient } = await import("@azure/keyvault-secrets");
      const { url, token } = JSON.parse(await Bun.stdin.text());
      const credential = { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 60000 }) };
      const kv = new SecretClient(url, credential, { disableChallengeResourceVerification: true });
      process.stdout.write((await kv.getSecret("db-password")).properties.version);`;
    const child = Bun.spawn([process.execPath, "-e", script], {
      cwd: import.meta.dir,
      env: { PATH: process.env.PATH ?? "", NODE_EXTRA_CA_CERTS: server.certPath },
      stdin: new Blob([JSON.stringify({ url: server.url, token: server.accessToken })]),
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, errText, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect({ code, errText }).toEqual({ code: 0, errText: "" });
    expect(out).toBe(server.state.secrets.get("db-password")!.at(-1)!.version);
  });
});
