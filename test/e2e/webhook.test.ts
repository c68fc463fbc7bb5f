/**
 * The inbound webhook of the compiled agent: with a one-hour polling interval, only a
 * notification can make the agent notice a change in time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const TOKEN = "webhook-test-token-0123456789abcdef";
const VALUES = ["hook-planted-ONE-7yT2", "hook-planted-TWO-3pR8"];
let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let url: string;
let containerId: string;

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-webhook-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "token"), VALUES[0]!);
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port;
  await probe.stop(true);
  url = `http://127.0.0.1:${port}`;
  await writeFile(
    join(dir, "dso.yaml"),
    [
      "providers:",
      "  local:",
      "    type: file",
      "    allow_undeclared: true",
      "    config:",
      `      path: ${join(dir, "secrets")}`,
      "agent:",
      "  watch:",
      "    polling_interval: 1h",
      "    webhook:",
      "      enabled: true",
      `      auth_token: ${TOKEN}`,
      `      listen: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
  await agent.waitForLog(/webhook listening/);
  const c = await docker.createContainer({
    name: `e2e-webhook-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
    Labels: { "dso.reloader": "true", "dso.secrets": "token" },
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" } },
  });
  containerId = c.id;
  await c.start();
});

afterAll(async () => {
  await agent?.stop("SIGTERM");
  await docker.getContainer(containerId).remove({ force: true }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

const tokenIn = async () => {
  const r = await execIn(docker, containerId, ["cat", "/run/secrets/token"]);
  return r.code === 0 ? r.stdout : undefined;
};

const post = (body: unknown, auth = `Bearer ${TOKEN}`, path = "/api/events/secret-update") =>
  fetch(`${url}${path}`, { method: "POST", headers: { authorization: auth, "content-type": "application/json" }, body: JSON.stringify(body) });

describe("inbound webhook", () => {
  test("a notification makes the agent poll at once and rotate the change", async () => {
    expect(await eventually("first delivery", tokenIn)).toBe(VALUES[0]!);
    await writeFile(join(dir, "secrets", "token"), VALUES[1]!);
    const res = await post({ provider: "local", secret_name: "token", event_type: "rotation", timestamp: new Date().toISOString() });
    expect(res.status).toBe(202);
    expect(await eventually("rotated by the webhook", async () => ((await tokenIn()) === VALUES[1] ? true : undefined), 10_000)).toBe(true);
  });

  test("a wrong or missing token is 401; bad bodies are 400 naming the field; unknown names 404", async () => {
    expect((await post({}, "Bearer wrong-token-of-the-same-len!!")).status).toBe(401);
    expect((await post({}, "")).status).toBe(401);
    const bad = await post({ secret_name: 42 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain("secret_name");
    expect((await post({ surprise: true })).status).toBe(400);
    expect((await post({ secret_name: "nope" })).status).toBe(404);
    expect((await post({}, `Bearer ${TOKEN}`, "/v1/webhook")).status).toBe(202);
    expect(agent.proc.exitCode).toBeNull();
  });

  test("no planted value or token in the agent log", () => {
    const logs = agent.logs();
    expect(logs).toContain("webhook notification");
    for (const value of [...VALUES, TOKEN]) expect(logs).not.toContain(value);
  });
});
