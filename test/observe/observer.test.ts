import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { startControlServer } from "../../src/agent/control-server.ts";
import { parseConfig } from "../../src/config/index.ts";
import { DsoError } from "../../src/errors.ts";
import { Observer } from "../../src/observe/observer.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { writeFile } from "node:fs/promises";

let dir: string;
const hooks: Record<string, unknown>[] = [];
let receiver: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-observe-"));
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      hooks.push((await req.json()) as Record<string, unknown>);
      return new Response("");
    },
  });
});
afterAll(async () => {
  receiver.stop(true);
  await rm(dir, { recursive: true, force: true });
});

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function observerFor(auditPath: string): Observer {
  const yaml = [
    "agent:",
    "  metrics:",
    "    listen: 127.0.0.1:0",
    "  audit:",
    `    output: ${auditPath}`,
    "notifications:",
    "  enabled: true",
    "  webhooks:",
    `    - url: http://127.0.0.1:${receiver.port}/dso`,
    "",
  ].join("\n");
  return new Observer(parseConfig(yaml, "dso.yaml", {}).config, { log: quiet, version: "0.0.0-test", processMetrics: false });
}

async function auditLines(path: string): Promise<Record<string, unknown>[]> {
  return (await readFile(path, "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l));
}

describe("the observer: one call per event feeds metrics, audit and notifications", () => {
  test("one rolling rotation gives delivery, strategy and rotation audit lines, moves counters and notifies", async () => {
    const auditPath = join(dir, "rotation.log");
    const observer = observerFor(auditPath);
    observer.start();
    try {
      const container = { id: "f".repeat(64), name: "web" };
      const secret = { name: "app/db", version: "v2-0123456789abcdef" };
      observer.pollFinished({ provider: "vault", secrets: ["app/db"] });
      observer.deliveryFinished({ container, secrets: [secret], mode: "volume", path: "/run/secrets", trigger: "poll", seconds: 0.04, changedAt: Date.now() - 900 });
      observer.strategyFinished({ container, strategy: "rolling", action: "replaced by abc", secrets: [secret], seconds: 3.2 });
      observer.rotationFinished({ container, secret, provider: "vault", strategy: "rolling", trigger: "poll" });
      await observer.notifier!.idle();

      const lines = await auditLines(auditPath);
      expect(lines.map((l) => [l.event, l.outcome])).toEqual([
        ["delivery", "ok"],
        ["strategy", "ok"],
        ["rotation", "ok"],
      ]);
      for (const line of lines) {
        expect(line.container).toEqual(container);
        expect(line.tag).toBe("audit");
      }
      expect(lines[0]).toMatchObject({ mode: "volume", path: "/run/secrets", trigger: "poll", secrets: [{ name: "app/db", version: "v2-012345678" }] });
      expect(lines[1]).toMatchObject({ strategy: "rolling", action: "replaced by abc", duration_ms: 3200 });
      expect(lines[2]).toMatchObject({ strategy: "rolling", secrets: [{ name: "app/db", version: "v2-012345678" }] });

      const scrape = await (await fetch(observer.metricsUrl!)).text();
      expect(scrape).toContain('dso_deliveries_total{mode="volume",outcome="ok"} 1');
      expect(scrape).toContain('dso_rotations_total{strategy="rolling",outcome="ok"} 1');
      expect(scrape).toContain("dso_change_to_delivered_seconds_count 1");
      expect(scrape).toContain('dso_audit_events_total{event="rotation"} 1');
      expect(scrape).toContain('dso_notifications_total{event="rotation_succeeded",outcome="sent"} 1');
      expect(hooks.at(-1)).toMatchObject({ event: "rotation_succeeded", secret: "app/db", provider: "vault", strategy: "rolling", container });
    } finally {
      await observer.stop();
    }
  });

  test("a failed delivery notifies delivery_failed; provider health notifies only on transitions", async () => {
    const observer = observerFor(join(dir, "failures.log"));
    try {
      const before = hooks.length;
      observer.deliveryFinished({ container: { id: "c" }, secrets: [{ name: "db" }], mode: "exec", seconds: 0.01, error: new DsoError("DELIVERY_FAILED", "tar exited 1") });
      observer.providerHealth({ provider: "aws", healthy: true });
      observer.providerHealth({ provider: "aws", healthy: false, error: new DsoError("PROVIDER_UNAVAILABLE", "down") });
      observer.providerHealth({ provider: "aws", healthy: false });
      observer.providerHealth({ provider: "aws", healthy: true });
      await observer.notifier!.idle();
      expect(hooks.slice(before).map((h) => h.event)).toEqual(["delivery_failed", "provider_unavailable", "provider_recovered"]);
      expect(hooks[before]).toMatchObject({ secret: "db", error: { code: "DELIVERY_FAILED", message: "tar exited 1" } });
    } finally {
      await observer.stop();
    }
  });

  test("a DSO volume's Mount is a plugin-mode delivery: counted with its time, and a refused one notifies delivery_failed with its own code", async () => {
    const auditPath = join(dir, "mounts.log");
    const observer = observerFor(auditPath);
    observer.start();
    try {
      const before = hooks.length;
      observer.volumeMounted({ volume: "app-secrets", mountId: "m1", secrets: [{ name: "db" }], seconds: 0.02 });
      observer.volumeMounted({ volume: "bad-secrets", mountId: "m2", secrets: [{ name: "nope" }], seconds: 0.01, error: new DsoError("SECRET_NOT_FOUND", 'secret "nope" not found') });
      await observer.notifier!.idle();
      const scrape = await (await fetch(observer.metricsUrl!)).text();
      expect(scrape).toContain('dso_deliveries_total{mode="plugin",outcome="ok"} 1');
      expect(scrape).toContain('dso_deliveries_total{mode="plugin",outcome="SECRET_NOT_FOUND"} 1');
      expect(scrape).toMatch(/dso_delivery_duration_seconds_count\{mode="plugin"\} 2/);
      expect((await auditLines(auditPath)).map((l) => [l.event, l.outcome, l.volume])).toEqual([
        ["mount", "ok", "app-secrets"],
        ["mount", "SECRET_NOT_FOUND", "bad-secrets"],
      ]);
      expect(hooks.slice(before)).toEqual([expect.objectContaining({ event: "delivery_failed", secret: "nope", volume: "bad-secrets", error: { code: "SECRET_NOT_FOUND", message: 'secret "nope" not found' } })]);
    } finally {
      await observer.stop();
    }
  });

  test("with nothing configured every call is a no-op", () => {
    const observer = new Observer(parseConfig("", "dso.yaml", {}).config, { log: quiet, version: "x" });
    expect(observer.metrics).toBeUndefined();
    expect(observer.audit).toBeUndefined();
    expect(observer.notifier).toBeUndefined();
    expect(observer.rawRoutes()).toEqual({});
    observer.deliveryFinished({ container: { id: "c" }, secrets: [], mode: "exec", seconds: 0 });
    observer.rotationFinished({ container: { id: "c" }, secret: { name: "s" }, strategy: "none" });
  });

  test("on the agent socket: GET /metrics answers, and every call is audited (reads too, and /metrics itself)", async () => {
    const auditPath = join(dir, "api.log");
    const observer = observerFor(auditPath);
    const socketPath = join(dir, "control.sock");
    const server = startControlServer({
      socketPath,
      routes: [
        { method: "GET", path: "/v1/status", access: "read", handle: async () => ({ ok: true }) },
        { method: "POST", path: "/v1/rotate", access: "trigger", body: v.object({ secret: v.string() }), handle: async () => ({ results: [] }) },
        {
          method: "POST",
          path: "/v1/sync",
          access: "trigger",
          body: v.object({ container: v.optional(v.string()) }),
          handle: async () => {
            throw new DsoError("DELIVERY_REFUSED", "no");
          },
        },
      ],
      rawRoutes: observer.rawRoutes(),
      onRequest: (info, callerUid) => observer.apiRequest(info, callerUid),
      log: quiet,
    });
    try {
      const call = (path: string, body?: unknown) =>
        fetch(`http://dso${path}`, { unix: socketPath, method: body === undefined ? "GET" : "POST", body: body === undefined ? undefined : JSON.stringify(body) } as RequestInit);
      expect((await call("/v1/status")).status).toBe(200);
      expect((await call("/v1/rotate", { secret: "app/db" })).status).toBe(200);
      expect((await call("/v1/sync", { container: "web" })).status).toBe(409);
      const metrics = await call("/metrics");
      expect(metrics.headers.get("content-type")).toStartWith("text/plain");
      expect(await metrics.text()).toContain('dso_audit_events_total{event="api"} 3');
      const lines = await auditLines(auditPath);
      expect(lines).toEqual([
        expect.objectContaining({ event: "api", outcome: "ok", request: { method: "GET", path: "/v1/status", status: 200 }, caller_uid: process.getuid!() }),
        expect.objectContaining({ event: "api", outcome: "ok", request: { method: "POST", path: "/v1/rotate", status: 200 }, secrets: [{ name: "app/db" }] }),
        expect.objectContaining({ event: "api", outcome: "DELIVERY_REFUSED", request: { method: "POST", path: "/v1/sync", status: 409 }, target: "web" }),
        expect.objectContaining({ event: "api", outcome: "ok", request: { method: "GET", path: "/metrics", status: 200 } }),
      ]);
    } finally {
      await server.stop(true);
      await observer.stop();
    }
  });
});

describe("a provider process reports to the observer (observer.forProvider)", () => {
  test("calls, fetched values by outcome, a restart after a crash, and the unavailable → recovered notifications", async () => {
    const secrets = join(dir, "provider-secrets");
    await Bun.$`mkdir -p ${secrets}`.quiet();
    await writeFile(join(secrets, "db"), "planted-observer-value-77");
    const observer = observerFor(join(dir, "provider.log"));
    observer.start();
    const provider = new ProviderProcess({ configure: { name: "local", type: "file", config: { path: secrets } }, observer: observer.forProvider("local") });
    const before = hooks.length;
    try {
      await provider.fingerprint([{ name: "db" }]);
      await provider.fetch([{ name: "db" }, { name: "missing" }]);
      process.kill(provider.getStatus().pid!, "SIGKILL");
      await Bun.sleep(300);
      await provider.fingerprint([{ name: "db" }]);
      await observer.notifier!.idle();
      const scrape = await (await fetch(observer.metricsUrl!)).text();
      expect(scrape).toContain('dso_provider_calls_total{provider="local",operation="fingerprint",outcome="ok"} 2');
      expect(scrape).toContain('dso_provider_calls_total{provider="local",operation="fetch",outcome="ok"} 1');
      expect(scrape).toContain('dso_secret_value_fetches_total{provider="local",outcome="ok"} 1');
      expect(scrape).toContain('dso_secret_value_fetches_total{provider="local",outcome="SECRET_NOT_FOUND"} 1');
      expect(scrape).toContain('dso_provider_restarts_total{provider="local"} 1');
      expect(scrape).not.toContain("planted-observer-value-77");
      expect(hooks.slice(before).map((h) => [h.event, h.provider])).toEqual([
        ["provider_unavailable", "local"],
        ["provider_recovered", "local"],
      ]);
      expect(JSON.stringify(hooks.slice(before))).not.toContain("planted-observer-value-77");
    } finally {
      await provider.stop();
      await observer.stop();
    }
  });
});
