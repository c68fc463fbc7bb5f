/**
 * Issue 18, hostile input stays local (findings 9 and 10c), with one compiled agent on the test
 * daemon: 300 rapid webhook calls make at most a few provider polls; a container that fills its
 * target directory with 200,000 entries gets a clear error of its own while the agent's memory
 * stays bounded and `/v1/status` keeps answering; `dso status --json` piped into a slow reader
 * gets the whole document; an exec-mode container whose tar prints terminal escapes and newlines
 * reaches the error message escaped.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execMode } from "../../src/delivery/modes/exec.ts";
import { mapLimit } from "../../src/util/map-limit.ts";
import { secretFile } from "../delivery/helpers.ts";
import { metricSum, readInside, rssKiB, scrapeMetrics } from "../support/agent-probe.ts";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { dsoBinary } from "../support/dso-binary.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const TOKEN = "hostile-webhook-token-0123456789";
/** Declared secrets, so `dso status --json` is well over a pipe's 64 KiB. */
const MANY = 1000;
const FOREIGN_ENTRIES = 200_000;
let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let webhookUrl: string;
const containers: string[] = [];

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-hostile-"));
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "token"), "hostile-v1");
  const names = Array.from({ length: MANY }, (_, i) => `declared-secret-number-${String(i).padStart(4, "0")}`);
  await mkdir(join(dir, "bulk"));
  await Promise.all(names.map((name) => writeFile(join(dir, "bulk", name), `value of ${name}`)));
  const port = await freePort();
  webhookUrl = `http://127.0.0.1:${port}/v1/webhook`;
  await writeFile(
    join(dir, "dso.yaml"),
    [
      "providers:",
      "  local:",
      "    type: file",
      `    config: { path: ${join(dir, "secrets")} }`,
      "  bulk:",
      "    type: file",
      `    config: { path: ${join(dir, "bulk")} }`,
      "agent:",
      "  metrics: { enabled: true }",
      "  watch:",
      "    polling_interval: 1h",
      `    webhook: { enabled: true, auth_token: ${TOKEN}, listen: "127.0.0.1:${port}" }`,
      "secrets:",
      "  - name: token",
      "    provider: local",
      ...names.map((name) => `  - { name: ${name}, provider: bulk }`),
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host });
  await agent.waitForLog(/webhook listening/);
  await eventually("the first polls", async () => (metricSum(await scrapeMetrics(agent), "dso_provider_polls_total") >= 2 ? true : undefined));
}, 60_000);

afterAll(async () => {
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await agent?.stop("SIGTERM");
  await rm(dir, { recursive: true, force: true });
});

/** Fingerprint polls of the provider the webhook calls name (one fingerprint call each). */
const polls = async () => metricSum(await scrapeMetrics(agent), "dso_provider_polls_total", 'provider="local"');

/** The poll count once it has not moved for `quietMs`. */
async function settledPolls(quietMs = 1500, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = await polls();
  let since = Date.now();
  while (Date.now() < deadline) {
    await Bun.sleep(200);
    const now = await polls();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return now;
  }
  return last;
}

describe("hostile input stays local", () => {
  test("dso status --json piped into a slow reader gets the whole document (> 64 KiB)", async () => {
    const out = join(dir, "status.json");
    const run = Bun.spawnSync(["sh", "-c", `"$DSO" status --json --socket "$SOCK" | (sleep 1; cat) > "$OUT"`], {
      env: { PATH: process.env.PATH!, DSO: await dsoBinary(), SOCK: agent.socket, OUT: out },
    });
    const text = readFileSync(out, "utf8");
    console.log(`dso status --json through a slow pipe: ${text.length} bytes (exit ${run.exitCode})`);
    expect(text.length).toBeGreaterThan(64 * 1024);
    const status = JSON.parse(text) as { secrets: unknown[] };
    expect(status.secrets.length).toBeGreaterThanOrEqual(MANY);
  }, 30_000);

  test("300 rapid webhook calls make at most 3 provider polls", async () => {
    const before = await settledPolls(500);
    // Eight callers, one call after another 10 ms apart: calls keep arriving while polls run.
    const started = performance.now();
    const answers = await mapLimit(Array.from({ length: 300 }, (_, i) => i), 8, async () => {
      const res = await fetch(webhookUrl, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ provider: "local" }) });
      await Bun.sleep(10);
      return res.status;
    });
    const burstMs = performance.now() - started;
    expect(answers.every((s) => s === 202)).toBe(true);
    const made = (await settledPolls()) - before;
    console.log(`300 webhook calls in ${Math.round(burstMs)} ms: ${made} provider polls`);
    expect(made).toBeGreaterThanOrEqual(1);
    expect(made).toBeLessThanOrEqual(3);
  }, 60_000);

  test("a target directory with 200,000 foreign entries: that container gets a clear error; agent memory bounded, /v1/status answers", async () => {
    const c = await docker.createContainer({
      name: `hostile-entries-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 3600 & wait; done'],
      Labels: { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "none" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755,size=64m" } },
    });
    containers.push(c.id);
    await c.start();
    const pid = (await c.inspect()).State.Pid;
    await eventually("first delivery", async () => (readInside(pid, "/run/secrets/token") === "hostile-v1" ? true : undefined));
    // The container fills its own target directory (done from the host: faster than a shell loop inside).
    const filled = Bun.spawnSync(["sh", "-c", `cd /proc/${pid}/root/run/secrets && seq -f junk%06g ${FOREIGN_ENTRIES} | xargs touch`]);
    expect(filled.exitCode).toBe(0);

    const agentPid = agent.proc.pid;
    const baseKiB = rssKiB(agentPid);
    writeFileSync(`/proc/${agentPid}/clear_refs`, "5"); // reset the peak (VmHWM) to the current RSS
    await writeFile(join(dir, "secrets", "token"), "hostile-v2");
    expect((await fetch(webhookUrl, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ secret_name: "token" }) })).status).toBe(202);

    const latencies: number[] = [];
    let outcome: { error?: string; delivered?: boolean } | undefined;
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline && !outcome) {
      const started = performance.now();
      const res = await fetch("http://dso/v1/status", { unix: agent.socket } as RequestInit);
      await res.arrayBuffer();
      latencies.push(performance.now() - started);
      if (readInside(pid, "/run/secrets/token") === "hostile-v2") outcome = { delivered: true };
      const ls = JSON.parse((await agent.cli(["ls", "--json"])).stdout) as { containers: Array<{ name: string; error?: string }> };
      const mine = ls.containers.find((x) => x.name === `hostile-entries-${process.pid}`);
      if (mine?.error) outcome = { error: mine.error };
      await Bun.sleep(100);
    }
    const peakKiB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agentPid}/status`, "utf8"))?.[1] ?? 0);
    const slowest = Math.max(...latencies);
    console.log(
      `${FOREIGN_ENTRIES} foreign entries: agent RSS ${Math.round(baseKiB / 1024)} MiB -> peak ${Math.round(peakKiB / 1024)} MiB; ` +
        `/v1/status slowest ${Math.round(slowest)} ms over ${latencies.length} calls; outcome ${JSON.stringify(outcome)}`,
    );
    expect(outcome?.error).toMatch(/more than [\d,]+ entries/);
    expect(outcome?.error).toContain("/run/secrets");
    expect(peakKiB - baseKiB).toBeLessThan(64 * 1024);
    expect(slowest).toBeLessThan(1000);
    expect(agent.proc.exitCode).toBeNull();
    await docker.getContainer(c.id).remove({ force: true });
  }, 90_000);

  test("an exec-mode container whose shell prints escapes and newlines: the error carries them escaped", async () => {
    const c = await docker.createContainer({
      name: `hostile-tar-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 3600 & wait; done'],
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    containers.push(c.id);
    await c.start();
    const pid = (await c.inspect()).State.Pid;
    const bin = `/proc/${pid}/root/usr/local/bin`;
    mkdirSync(bin, { recursive: true });
    // First on the exec PATH: the container's own program answers the delivery (busybox sh would
    // run its built-in tar, whatever tar is on PATH), as a hostile image's sh or tar could.
    writeFileSync(`${bin}/sh`, "#!/bin/sh\nprintf '\\033[31mfake\\nlevel=error forged\\n' >&2\nexit 1\n");
    chmodSync(`${bin}/sh`, 0o755);
    const error = await execMode
      .deliver(docker, { containerId: c.id, targetPath: "/run/secrets", mode: "exec", reason: "test" }, [secretFile("k", "v")])
      .then(() => undefined, (e: Error) => e);
    console.log(`exec mode, hostile tar: ${JSON.stringify(error?.message)}`);
    expect(error?.message).toContain("\\u001b[31mfake");
    expect(error?.message).not.toContain("\u001b");
    expect(error?.message).not.toContain("\n");
  }, 30_000);
});
