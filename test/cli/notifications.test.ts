import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDso } from "../support/dso-binary.ts";

let dir: string;
let server: ReturnType<typeof Bun.serve>;
const received: { path: string; auth: string | null; body: Record<string, unknown> }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-notify-cli-"));
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      received.push({ path, auth: req.headers.get("authorization"), body: (await req.json()) as Record<string, unknown> });
      return new Response("", { status: path === "/broken" ? 500 : 204 });
    },
  });
});
afterAll(async () => {
  server.stop(true);
  await rm(dir, { recursive: true, force: true });
});

describe("dso notifications test", () => {
  test("posts a test event to every webhook with its headers and reports each answer", async () => {
    const config = join(dir, "dso.yaml");
    await writeFile(
      config,
      [
        "notifications:",
        "  enabled: true",
        "  webhooks:",
        `    - url: http://127.0.0.1:${server.port}/ok`,
        "      headers:",
        "        Authorization: Bearer ${HOOK_TOKEN}",
        `    - url: http://127.0.0.1:${server.port}/broken`,
        "      events: [rotation_failed]",
        "",
      ].join("\n"),
    );
    const run = await runDso(["notifications", "test", "--config", config, "--json"], { env: { PATH: process.env.PATH, HOOK_TOKEN: "planted-hook-token-1" } });
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout);
    expect(report.results).toEqual([
      { webhook: `#0 (127.0.0.1:${server.port})`, events: ["rotation_succeeded", "rotation_failed", "delivery_failed", "provider_unavailable", "provider_recovered"], ok: true, result: "HTTP 204" },
      { webhook: `#1 (127.0.0.1:${server.port})`, events: ["rotation_failed"], ok: false, result: "HTTP 500" },
    ]);
    const ok = received.find((r) => r.path === "/ok")!;
    expect(ok.auth).toBe("Bearer planted-hook-token-1");
    expect(ok.body).toMatchObject({ v: 1, event: "test" });
    expect(run.stdout + run.stderr).not.toContain("planted-hook-token-1");
    const table = await runDso(["notifications", "test", "--config", config], { env: { PATH: process.env.PATH, HOOK_TOKEN: "planted-hook-token-1" } });
    expect(table.stdout).toMatch(/^WEBHOOK\s+STATUS\s+ANSWER\s+EVENTS\n#0 \(127\.0\.0\.1:\d+\)\s+ok\s+HTTP 204/);
    expect(table.stdout).toContain("FAILED  HTTP 500");
  });

  test("a config without webhooks is an error that says so", async () => {
    const config = join(dir, "none.yaml");
    await writeFile(config, "agent:\n  cache: false\n");
    const run = await runDso(["notifications", "test", "--config", config]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("has no notifications.webhooks");
  });
});
