// Workload identity federation for the gcp provider: external_account credentials files with
// file- and URL-sourced subject tokens, the STS token exchange and service-account impersonation,
// against the local STS / IAM Credentials / identity-provider routes of test/support/gcp-server.ts.
// The client runs in process (the same settings parser and token source the provider process uses).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { providerBlockProblems } from "../../providers/block-check.ts";
import { parseGcpSettings } from "../../providers/gcp/config.ts";
import { gcpDescriptor } from "../../providers/gcp/descriptor.ts";
import { createGcpClient } from "../../providers/gcp/index.ts";
import { FEDERATION_AUDIENCE, JWT_TOKEN_TYPE, startGcpServer, type GcpServer } from "../support/gcp-server.ts";

const noLog = { debug() {}, info() {}, warn() {}, error() {} };
let server: GcpServer;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-gcp-wif-"));
  server = await startGcpServer();
  server.state.addVersion("db-password", "federated-value");
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

async function credentialsFile(content: string): Promise<string> {
  const path = join(dir, `external-${++n}.json`);
  await writeFile(path, content, { mode: 0o600 });
  return path;
}

function settings(path: string, method?: string) {
  return parseGcpSettings({ name: "wif", type: "gcp", config: { project: server.project, endpoint: server.url }, ...(method ? { auth: { method } } : {}) }, { GOOGLE_APPLICATION_CREDENTIALS: path });
}

async function fingerprintWith(path: string) {
  const client = createGcpClient(settings(path), { log: noLog, env: {} });
  return client.fingerprint([{ name: "db-password" }], AbortSignal.timeout(20_000));
}

describe("external_account (workload identity federation)", () => {
  test("a file-sourced subject token is exchanged at the STS with the documented form; the federated token reads Secret Manager", async () => {
    const subjectPath = join(dir, "oidc-token");
    const subject = server.state.federation.issueSubjectToken();
    await writeFile(subjectPath, `${subject}\n`);
    const path = await credentialsFile(server.externalAccount({ file: subjectPath }));
    const before = server.state.federation.used.length;
    const [item] = await fingerprintWith(path);
    expect(item!.fingerprint).toStartWith("v1@");
    expect(server.state.federation.lastExchange).toEqual({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      audience: FEDERATION_AUDIENCE,
      scope: "https://www.googleapis.com/auth/cloud-platform",
      requested_token_type: "urn:ietf:params:oauth:token-type:access_token",
      subject_token: subject,
      subject_token_type: JWT_TOKEN_TYPE,
    });
    expect(server.state.federation.used.slice(before)).toEqual(["federated"]);
  });

  test("a URL-sourced JSON subject token (with headers) and impersonation: Secret Manager sees the service account's token", async () => {
    server.state.federation.urlSubjectToken = server.state.federation.issueSubjectToken();
    const source = { url: server.subjectTokenUrl, headers: { Metadata: "true" }, format: { type: "json", subject_token_field_name: "access_token" } };
    const path = await credentialsFile(server.externalAccount(source, { impersonate: true }));
    const before = server.state.federation.used.length;
    await fingerprintWith(path);
    expect(server.state.federation.lastExchange?.subject_token).toBe(server.state.federation.urlSubjectToken);
    expect(server.state.federation.lastImpersonation).toEqual({ bearer: "federated", body: { scope: ["https://www.googleapis.com/auth/cloud-platform"], lifetime: "3600s" } });
    expect(server.state.federation.used.slice(before)).toEqual(["impersonated"]);
  });

  test("a refused exchange, a missing header and an unreadable token file fail naming the step, never a token", async () => {
    const subjectPath = join(dir, "revoked-token");
    const planted = "eyJhbGciOiJSUzI1NiJ9.PLANTED-SUBJECT-TOKEN.c2ln";
    await writeFile(subjectPath, planted);
    const refused = await fingerprintWith(await credentialsFile(server.externalAccount({ file: subjectPath }))).catch((e: Error) => e);
    expect(refused).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("the STS token exchange (token_url) refused (HTTP 400)") });
    expect(JSON.stringify(refused) + String((refused as Error).message)).not.toContain("PLANTED-SUBJECT-TOKEN");
    const noHeader = await fingerprintWith(await credentialsFile(server.externalAccount({ url: server.subjectTokenUrl, format: { type: "json", subject_token_field_name: "access_token" } }))).catch((e: Error) => e);
    expect(noHeader).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("the subject token URL (credential_source.url, 127.0.0.1:") });
    const missing = await fingerprintWith(await credentialsFile(server.externalAccount({ file: join(dir, "nope") }))).catch((e: Error) => e);
    expect(missing).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("cannot read the subject token file") });
  });

  test("executable- and AWS-sourced credentials are refused naming the field; bad fields are named", async () => {
    const refusals: Array<[Record<string, unknown>, string]> = [
      [{ executable: { command: "/usr/bin/id", timeout_millis: 5000 } }, "external_account credential_source.executable: executable-sourced credentials are not supported"],
      [{ environment_id: "aws1", region_url: "http://169.254.169.254/latest/meta-data/placement/availability-zone" }, "external_account credential_source.environment_id: AWS-sourced credentials are not supported"],
      [{}, "external_account credential_source: needs file or url"],
      [{ file: "/x", format: { type: "json" } }, "external_account credential_source.format.subject_token_field_name: is required for format json"],
      [{ file: "/x", format: { type: "xml" } }, "external_account credential_source.format.type: must be text or json"],
    ];
    for (const [source, message] of refusals) {
      const path = await credentialsFile(server.externalAccount(source));
      expect(() => settings(path)).toThrow(`GOOGLE_APPLICATION_CREDENTIALS: ${message}`);
    }
    const plainSts = await credentialsFile(JSON.stringify({ ...JSON.parse(server.externalAccount({ file: "/x" })), token_url: "http://sts.example.com/v1/token" }));
    expect(() => settings(plainSts)).toThrow("GOOGLE_APPLICATION_CREDENTIALS: external_account token_url: must be an https:// URL");
  });

  test("a credentials file cannot send the subject token or the federated token to another host, nor the token in clear", async () => {
    const base = JSON.parse(server.externalAccount({ file: "/x" })) as Record<string, unknown>;
    const refused: Array<[Record<string, unknown>, string]> = [
      // Whoever writes the file would receive the subject token (or any file named as one) ...
      [{ token_url: "https://attacker.example/v1/token" }, "external_account token_url: must be a Google endpoint (*.googleapis.com), not attacker.example"],
      [{ token_url: "https://sts.googleapis.com.attacker.example/v1/token" }, "external_account token_url: must be a Google endpoint"],
      // ... or the federated access token as a Bearer header.
      [{ service_account_impersonation_url: "https://attacker.example/v1/sa:generateAccessToken" }, "external_account service_account_impersonation_url: must be a Google endpoint"],
      // A subject token over plain http beyond this host and the link-local metadata address.
      [{ credential_source: { url: "http://tokens.corp.example:8080/token" } }, "external_account credential_source.url: must be https://"],
      [{ credential_source: { url: "https://tokens.corp.example/token", headers: { "x-bad\r\nInjected": "1" } } }, "external_account credential_source.headers: has a header name that is not a token"],
      [{ credential_source: { url: "https://tokens.corp.example/token", headers: { Authorization: "Bearer a\r\nX-Injected: 1" } } }, "external_account credential_source.headers.Authorization: must be a one-line string"],
      [{ credential_source: { environment_id: "AWS1", region_url: "http://169.254.169.254/" } }, "external_account credential_source.environment_id: AWS-sourced credentials are not supported"],
    ];
    for (const [over, message] of refused) {
      const path = await credentialsFile(JSON.stringify({ ...base, ...over }));
      expect(() => settings(path)).toThrow(`GOOGLE_APPLICATION_CREDENTIALS: ${message}`);
    }
    // Google's regional and default endpoints, and IMDS over plain http, are taken.
    for (const over of [
      { token_url: "https://sts.googleapis.com/v1/token" },
      { token_url: "https://sts.us-east1.rep.googleapis.com/v1/token" },
      { credential_source: { url: "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01", headers: { Metadata: "True" } } },
    ]) {
      const path = await credentialsFile(JSON.stringify({ ...base, ...over }));
      expect(settings(path).auth.method).toBe("external_account");
    }
  });

  test("a FIFO or /dev/zero as the subject token file is refused at once, without hanging the provider", async () => {
    const fifo = join(dir, "token.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    for (const file of [fifo, "/dev/zero"]) {
      // A blocking read of either never returns: the test would time out.
      const error = await fingerprintWith(await credentialsFile(server.externalAccount({ file }))).catch((e: Error) => e);
      expect(error).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("is not a regular file (credential_source.file)") });
    }
    const big = join(dir, "big-token");
    await writeFile(big, "x".repeat(70 * 1024));
    const error = await fingerprintWith(await credentialsFile(server.externalAccount({ file: big }))).catch((e: Error) => e);
    expect(error).toMatchObject({ rpcCode: "PROVIDER_AUTH", message: expect.stringContaining("is larger than 65536 bytes") });
  });

  test("auth.method external_account is a known method and takes the file; a service-account key is not one", async () => {
    expect(providerBlockProblems(gcpDescriptor, { config: { project: "my-project" }, auth: { method: "external_account", params: {} } })).toEqual([]);
    const path = await credentialsFile(server.externalAccount({ file: "/x" }));
    expect(settings(path, "external_account").auth.method).toBe("external_account");
    const key = await credentialsFile(server.serviceAccountKey());
    expect(() => settings(key, "external_account")).toThrow("auth.method external_account needs an external_account file");
  });
});
