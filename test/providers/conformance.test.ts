/**
 * The conformance suite (conformance.ts) for all five providers, each in process against its
 * local server (file: a temp directory).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TokenCredential } from "@azure/identity";
import { awsProvider } from "../../providers/aws/index.ts";
import { parseAzureSettings } from "../../providers/azure/config.ts";
import { createAzureClient } from "../../providers/azure/index.ts";
import { fileProvider } from "../../providers/file/index.ts";
import { gcpProvider } from "../../providers/gcp/index.ts";
import { vaultProvider } from "../../providers/vault/index.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer, type AwsServer } from "../support/aws-server.ts";
import { startAzureServer, type AzureServer } from "../support/azure-server.ts";
import { startGcpServer, type GcpServer } from "../support/gcp-server.ts";
import { startVaultServer, type VaultServer } from "../support/vault-server.ts";
import { faultProxy, providerConformance, type ConformanceTarget } from "./conformance.ts";

const ctx = { log: { debug() {}, info() {}, warn() {}, error() {} }, env: {} };
const FINGERPRINT_KEY = "c3".repeat(32);
const json = (status: number, body: unknown, headers: Record<string, string> = {}) => Response.json(body, { status, headers });

// --- gcp: the server's own switches ---
{
  let server: GcpServer;
  let dir: string;
  const target: ConformanceTarget = {
    type: "gcp",
    allowedNames: ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789_-", "x".repeat(255)],
    maxValueBytes: 64 * 1024,
    binary: true,
    async start() {
      server = await startGcpServer();
      dir = await mkdtemp(join(tmpdir(), "dso-conf-gcp-"));
      await writeFile(join(dir, "key.json"), server.serviceAccountKey());
    },
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
    client: () => gcpProvider.create({ name: "conf", type: "gcp", config: { project: server.project, endpoint: server.url } }, { ...ctx, env: { GOOGLE_APPLICATION_CREDENTIALS: join(dir, "key.json") } }),
    put: (name, value) => void server.state.addVersion(name, value),
    valueReads: () => server.state.calls.access ?? 0,
    faults: {
      deny: () => void server.state.denied.add("conf-rotating"),
      throttle: (s) => server.state.throttleNext(1_000_000, s),
      malformed: () => server.state.malformedNext(1_000_000),
      delay: (ms) => void (server.state.delayMs = ms),
      clear() {
        server.state.denied.clear();
        server.state.throttleNext(0);
        server.state.malformedNext(0);
        server.state.delayMs = 0;
      },
    },
  };
  providerConformance(target);
}

// --- aws: a proxy answering as Secrets Manager does ---
{
  let server: AwsServer;
  let proxy: ReturnType<typeof faultProxy>;
  const awsError = (type: string, headers: Record<string, string> = {}) =>
    json(400, { __type: type, message: "from the conformance proxy" }, { "content-type": "application/x-amz-json-1.1", "x-amzn-errortype": type, ...headers });
  const target: ConformanceTarget = {
    type: "aws",
    allowedNames: ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789", "path/to+the=secret.name@x_y-z"],
    maxValueBytes: 64 * 1024,
    binary: true,
    throttleRetryAfterSeconds: 1,
    async start() {
      server = await startAwsServer();
      proxy = faultProxy(server.url, {
        deny: () => awsError("AccessDeniedException"),
        throttle: (s) => awsError("ThrottlingException", { "retry-after": String(s) }),
        malformed: () => new Response("{not json", { status: 200, headers: { "content-type": "application/x-amz-json-1.1" } }),
      });
    },
    async stop() {
      proxy.stop();
      await server.stop();
    },
    client: () =>
      awsProvider.create(
        { name: "conf", type: "aws", region: "us-east-1", config: { endpoint: proxy.url, max_attempts: "2" }, credentials: { AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "conformance-secret-key" } },
        { ...ctx, env: { AWS_EC2_METADATA_DISABLED: "true" } },
      ),
    put: (name, value) => void server.state.putSecret(name, value),
    valueReads: () => (server.state.calls.GetSecretValue ?? 0) + (server.state.calls.BatchGetSecretValue ?? 0),
    faults: {
      ...proxyFaults(() => proxy),
    },
  };
  providerConformance(target);
}

// --- vault (KV v2): a proxy answering as Vault does ---
{
  let server: VaultServer;
  let proxy: ReturnType<typeof faultProxy>;
  const target: ConformanceTarget = {
    type: "vault",
    allowedNames: ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789", "team/app/db-pass_word.v1@x+y=z~w"],
    maxValueBytes: 512 * 1024,
    binary: false,
    async start() {
      server = await startVaultServer();
      proxy = faultProxy(server.url, {
        deny: () => json(403, { errors: ["permission denied"] }),
        throttle: (s) => json(429, { errors: ["request path \"secret/data/x\": rate limit quota exceeded"] }, { "retry-after": String(s) }),
        malformed: () => new Response("<html>not vault</html>", { status: 200, headers: { "content-type": "application/json" } }),
      });
    },
    async stop() {
      proxy.stop();
      await server.stop();
    },
    client: () => vaultProvider.create({ name: "conf", type: "vault", config: { address: proxy.url, token: server.state.rootToken, mount: "secret" }, fingerprintKey: FINGERPRINT_KEY }, ctx),
    put: (name, value) => void server.state.writeSecret(`secret/${name}`, { value: typeof value === "string" ? value : Buffer.from(value).toString("latin1") }),
    valueReads: () => server.state.calls.data ?? 0,
    faults: proxyFaults(() => proxy),
  };
  providerConformance(target);
}

// --- azure: the server's own switches (HTTPS; no proxy, so no malformed replies) ---
{
  let server: AzureServer;
  const target: ConformanceTarget = {
    type: "azure",
    allowedNames: ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789-x", "under_score_maps_to_dash"],
    maxValueBytes: 25 * 1024,
    changeResolutionMs: 1_050,
    binary: false,
    async start() {
      server = await startAzureServer();
    },
    async stop() {
      await server.stop();
    },
    async client() {
      const credential: TokenCredential = { getToken: async () => ({ token: server.accessToken, expiresOnTimestamp: Date.now() + 3_600_000 }) };
      const settings = parseAzureSettings({ name: "conf", type: "azure", config: { vault_url: server.url, disable_challenge_resource_verification: "true" } }, {});
      return createAzureClient(settings, ctx, credential, { tlsCa: server.certPem });
    },
    put: (name, value) => void server.state.setSecret(name.replaceAll("_", "-"), typeof value === "string" ? value : Buffer.from(value).toString("latin1")),
    valueReads: () => server.state.calls.getSecret ?? 0,
    faults: {
      deny: () => void (server.state.failAuth = true),
      throttle: (s) => server.state.throttleNext(1_000_000, s),
      delay: (ms) => void (server.state.delayMs = ms),
      clear() {
        server.state.failAuth = false;
        server.state.throttleNext(0);
        server.state.delayMs = 0;
      },
    },
  };
  providerConformance(target);
}

// --- file: a directory; no service, so no permission, throttling, malformed or hung replies (the agent runs as root) ---
{
  let dir: string;
  const target: ConformanceTarget = {
    type: "file",
    allowedNames: ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789", "sub/dir/ !#$%&'()+,;=@[]^`{}~-_.x", "ünï-cödé"],
    maxValueBytes: 1024 * 1024,
    binary: true,
    async start() {
      dir = await mkdtemp(join(tmpdir(), "dso-conf-file-"));
    },
    async stop() {
      await rm(dir, { recursive: true, force: true });
    },
    client: () => fileProvider.create({ name: "conf", type: "file", config: { path: dir }, fingerprintKey: FINGERPRINT_KEY }, ctx),
    async put(name, value) {
      await mkdir(dirname(join(dir, name)), { recursive: true });
      await writeFile(join(dir, name), value);
    },
    faults: { clear() {} },
  };
  providerConformance(target);
}

function proxyFaults(proxy: () => ReturnType<typeof faultProxy>) {
  return {
    deny: () => proxy().faults.deny(),
    throttle: (s: number) => proxy().faults.throttle(s),
    malformed: () => proxy().faults.malformed(),
    delay: (ms: number) => proxy().faults.delay(ms),
    clear: () => proxy().faults.clear(),
  };
}
