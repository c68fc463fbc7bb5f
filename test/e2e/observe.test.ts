/**
 * Metrics, audit trail and notifications from the running agent (compiled binary): one rotation
 * of a `signal` container moves the counters, writes delivery/strategy/rotation audit lines and
 * posts rotation_succeeded to a local receiver — and none of them holds the value.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const V1 = "observe-planted-ONE-q7Lm";
const V2 = "observe-planted-TWO-x3Rt";
let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let receiver: ReturnType<typeof Bun.serve>;
const received: Array<{ event: string; body: string }> = [];
let containerId: string;
let metricsPort: number;

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-observe-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "token"), V1);
  receiver = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const body = await req.text();
      received.push({ event: (JSON.parse(body) as { event: string }).event, body });
      return new Response("ok");
    },
  });
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  metricsPort = probe.port!;
  await probe.stop(true);
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
      "  metrics:",
      `    listen: 127.0.0.1:${metricsPort}`,
      "  audit:",
      `    output: ${join(dir, "audit.log")}`,
      "  leak_sentinel:",
      "    enabled: true",
      "notifications:",
      "  enabled: true",
      "  webhooks:",
      `    - url: http://127.0.0.1:${receiver.port}/hook`,
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
  await agent.waitForLog(/connected to Docker/);
  const c = await docker.createContainer({
    name: `e2e-observe-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", 'trap "exit 0" TERM; trap "true" HUP; while true; do sleep 0.1; done'],
    Labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" },
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
  });
  containerId = c.id;
  await c.start();
});

const leaky: string[] = [];

afterAll(async () => {
  await agent?.stop("SIGKILL");
  for (const id of [containerId, ...leaky]) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await receiver?.stop(true);
  await rm(dir, { recursive: true, force: true });
});

const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
const counter = (text: string, name: string, labels: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.split(",").every((p) => l.includes(p)));
  return line ? Number(line.split(" ").at(-1)) : 0;
};
const tokenIn = async () => {
  const r = await execIn(docker, containerId, ["cat", "/run/secrets/token"]);
  return r.code === 0 ? r.stdout : undefined;
};

describe("metrics, audit and notifications from the running agent", () => {
  test("one rotation moves the counters, is audited, and is notified, without the value", async () => {
    expect(await eventually("first delivery", tokenIn)).toBe(V1);
    const before = await scrape();
    await writeFile(join(dir, "secrets", "token"), V2);
    expect((await agent.cli(["rotate", "token"])).code).toBe(0);
    expect(await eventually("rotated", async () => ((await tokenIn()) === V2 ? V2 : undefined))).toBe(V2);
    const after = await eventually("rotation counted", async () => {
      const text = await scrape();
      return counter(text, "dso_rotations_total", 'strategy="signal",outcome="ok"') > counter(before, "dso_rotations_total", 'strategy="signal",outcome="ok"') ? text : undefined;
    });
    expect(counter(after, "dso_deliveries_total", 'mode="procfs",outcome="ok"')).toBeGreaterThan(counter(before, "dso_deliveries_total", 'mode="procfs",outcome="ok"'));
    expect(counter(after, "dso_provider_calls_total", 'operation="fetch"')).toBeGreaterThan(0);
    expect(after).toContain("dso_reconcile_passes_total");

    const audit = (await eventually("audit lines", async () => {
      const text = await readFile(join(dir, "audit.log"), "utf8").catch(() => "");
      return text.includes('"event":"rotation"') ? text : undefined;
    })).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { event: string; container?: { name?: string }; secrets?: Array<{ name: string }>; strategy?: string; trigger?: string });
    const mine = audit.filter((l) => l.container?.name === `e2e-observe-${process.pid}`);
    expect(mine.map((l) => l.event)).toEqual(expect.arrayContaining(["delivery", "strategy", "rotation"]));
    expect(mine.find((l) => l.event === "rotation")).toMatchObject({ strategy: "signal", trigger: "rotate", secrets: [expect.objectContaining({ name: "token" })] });
    // The `dso rotate` above ran as root: its audit line carries the socket peer's uid.
    const apiLines = audit.filter((l) => l.event === "api") as Array<{ request?: { path: string }; caller_uid?: number; secrets?: Array<{ name: string }> }>;
    expect(apiLines.find((l) => l.request?.path === "/v1/rotate")).toMatchObject({ caller_uid: 0, secrets: [{ name: "token" }] });
    // A non-root caller is refused by the socket's mode (0600 root) before any request is read.
    if (Bun.which("setpriv") && Bun.which("curl")) {
      const refused = Bun.spawn(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "curl", "-sS", "--unix-socket", agent.socket, "-X", "POST", "-d", '{"secret":"token"}', "http://dso/v1/rotate"], { stdout: "pipe", stderr: "pipe" });
      expect(await refused.exited).toBe(7);
      const lines = (await readFile(join(dir, "audit.log"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { event: string; caller_uid?: number });
      expect(lines.filter((l) => l.event === "api" && l.caller_uid !== 0)).toEqual([]);
    }

    const note = await eventually("rotation_succeeded posted", async () => received.find((r) => r.event === "rotation_succeeded"));
    expect(note.body).toContain("token");

    for (const text of [after, await readFile(join(dir, "audit.log"), "utf8"), ...received.map((r) => r.body), agent.logs()]) {
      expect(text).not.toContain(V1);
      expect(text).not.toContain(V2);
    }
  });

  test("leak sentinel: a container that prints its secret is reported by name (container, secret), never by value", async () => {
    const name = `e2e-leaky-${process.pid}`;
    const c = await docker.createContainer({
      name,
      Image: BUSYBOX_IMAGE,
      // Prints its secret once a second (the application bug the sentinel is for).
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do [ -f /run/secrets/token ] && echo "starting with token=$(cat /run/secrets/token)"; sleep 1; done'],
      Labels: { "dso.reloader": "true", "dso.secrets": "token" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    leaky.push(c.id);
    await c.start();
    const warning = await agent.waitForLog(/a value DSO delivered appeared in a container's output/, 30_000);
    expect(warning).toContain(name);
    expect(warning).toContain('"secret":"token"');
    // Positive control: the value really is in the container's output.
    const output = ((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
    expect(output).toContain(V2);
    const audit = await eventually("leak audited", async () => {
      const text = await readFile(join(dir, "audit.log"), "utf8").catch(() => "");
      return text.includes('"event":"leak"') ? text : undefined;
    });
    const leak = audit.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { event: string; container?: { name?: string }; secrets?: Array<{ name: string }> }).find((l) => l.event === "leak");
    expect(leak).toMatchObject({ container: { name }, secrets: [{ name: "token" }] });
    const metrics = await eventually("leak counted", async () => {
      const text = await scrape();
      return counter(text, "dso_secret_leaks_total", 'secret="token"') > 0 ? text : undefined;
    });
    // Reported once (per container and secret per 10 minutes), counted at every sighting.
    await Bun.sleep(2500);
    expect(agent.logs().split("\n").filter((l) => l.includes("appeared in a container's output")).length).toBe(1);
    expect(counter(await scrape(), "dso_secret_leaks_total", 'secret="token"')).toBeGreaterThan(counter(metrics, "dso_secret_leaks_total", 'secret="token"'));
    // The quiet container never printed its secret: no report names it.
    expect(agent.logs()).not.toMatch(new RegExp(`appeared in a container's output.*e2e-observe-${process.pid}`));
    for (const text of [agent.logs(), audit, metrics]) expect(text).not.toContain(V2);
  });
});
