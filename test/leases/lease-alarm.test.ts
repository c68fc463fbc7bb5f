// The agent's lease wiring (src/leases/agent-leases.ts) with the real Observer: a renewal that
// fails raises the alarm once, before expiry: an error log line, a `rotation` audit line with the
// error, the `rotation_failed` notification, and the lease metrics. Provider faked (its calls are
// tested against the Vault wire server in lease-keeper-vault.test.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/index.ts";
import { DsoError } from "../../src/errors.ts";
import { startAgentLeases } from "../../src/leases/agent-leases.ts";
import { Observer } from "../../src/observe/observer.ts";

let dir: string;
const hooks: Record<string, unknown>[] = [];
let receiver: ReturnType<typeof Bun.serve>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-lease-alarm-"));
  receiver = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async (req) => (hooks.push((await req.json()) as Record<string, unknown>), new Response("")) });
});
afterAll(async () => {
  receiver.stop(true);
  await rm(dir, { recursive: true, force: true });
});

describe("a lease at risk", () => {
  test("a failed renewal: one error line, an audit line, rotation_failed and the failure counter, before expiry", async () => {
    const yaml = [
      "providers:",
      "  vault: { type: vault, config: { address: 'http://127.0.0.1:1' } }",
      "secrets:",
      "  - name: db",
      "    dynamic: { path: database/creds/app, renew_at: 0.1 }",
      "agent:",
      "  metrics: { listen: 127.0.0.1:0 }",
      `  audit: { output: ${join(dir, "audit.log")} }`,
      "notifications:",
      "  enabled: true",
      "  webhooks:",
      `    - url: http://127.0.0.1:${receiver.port}/dso`,
      "",
    ].join("\n");
    const { config } = parseConfig(yaml, "dso.yaml", {});
    const observer = new Observer(config, { log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }, version: "0.0.0-test", processMetrics: false });
    observer.start();
    const errors: string[] = [];
    const log = { debug: () => {}, info: () => {}, warn: () => {}, error: (msg: string) => void errors.push(msg) } as never;
    let renewals = 0;
    const keeper = await startAgentLeases({
      config: () => config,
      provider: () => ({
        issue: async () => ({ item: { ref: { name: "db" }, value: new Map([["password", new TextEncoder().encode("alarm-planted-pw")]]) }, lease: { leaseId: "database/creds/app/x1", renewable: true, expiresAtMs: Date.now() + 3_000 } }),
        lease: async () => {
          renewals++;
          throw new DsoError("PROVIDER_UNAVAILABLE", "provider vault: Vault answered 503 for lease renewal");
        },
      }),
      dir,
      hostKey: new Uint8Array(32),
      log,
      registry: observer.metrics!.registry,
      onReplaceWanted: () => {},
      alarm: (p) => observer.leaseAtRisk(p),
    });
    try {
      keeper.run();
      await keeper.credential("db", "c".repeat(64));
      for (let i = 0; i < 60 && hooks.length === 0; i++) await Bun.sleep(50);
      await observer.notifier!.idle();
      expect(renewals).toBeGreaterThanOrEqual(1);
      expect(errors).toEqual(["a dynamic credential is at risk: its lease could not be kept"]);
      const audit = (await readFile(join(dir, "audit.log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(audit.at(-1)).toMatchObject({ event: "rotation", outcome: "PROVIDER_UNAVAILABLE", action: "lease renew", secrets: [{ name: "db" }], container: { id: "c".repeat(64) } });
      expect(hooks.at(-1)).toMatchObject({ event: "rotation_failed", secret: "db", provider: "vault" });
      const scrape = await (await fetch(observer.metricsUrl!)).text();
      expect(scrape).toContain('dso_lease_failures_total{secret="db",operation="renew"}');
      expect(scrape).toContain("dso_leases_active 1");
      expect(scrape).toMatch(/dso_lease_seconds_to_expiry [0-9.]+/);
      for (const text of [scrape, JSON.stringify(audit), JSON.stringify(hooks)]) expect(text).not.toContain("alarm-planted-pw");
    } finally {
      await keeper.stop();
      await observer.stop();
    }
  });
});
