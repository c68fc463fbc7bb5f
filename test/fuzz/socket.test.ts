/**
 * Hostile input to the real agent's unix socket (issue 13): random methods, paths, headers and
 * bodies on the control API and the Docker plugin protocol, with slow clients beside them. The
 * compiled agent runs with the file provider against the test daemon; `dso status` is asked
 * throughout and after (its worst latency is printed: a figure, not a threshold).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { failureReport, formatFigures, fuzzRuns, runFuzz } from "../support/fuzz.ts";
import { judgeResponse, requestCase, sendRaw, startSlowClients } from "./socket-cases.ts";

const CASE_BOUND_MS = 10_000;
const STATUS_EVERY_MS = 500;

let dir: string;
let volumesRoot: string;
let agent: AgentProcess;

beforeAll(async () => {
  const d = await ensureDocker();
  dir = await mkdtemp(join(tmpdir(), "dso-fuzz-socket-"));
  volumesRoot = join(dir, "volumes");
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "db"), "fuzz-socket-value");
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  volumes_root: ${volumesRoot}\n  watch:\n    polling_interval: 1s\n`,
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host, name: "fuzz-socket" });
}, 60_000);

afterAll(async () => {
  await agent?.stop("SIGTERM");
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
});

async function statusLatencyMs(): Promise<number | undefined> {
  const started = performance.now();
  const { code } = await agent.cli(["status", "--json"]);
  return code === 0 ? performance.now() - started : undefined;
}

describe("hostile requests on the agent socket", () => {
  test("every answer is a JSON error with a code or a valid reply; the agent stays up and `dso status` answers", async () => {
    const slow = startSlowClients(agent.socket, 6);
    const latencies: number[] = [];
    let unanswered = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ms = await statusLatencyMs();
        if (ms === undefined) unanswered++;
        else latencies.push(ms);
        await Bun.sleep(STATUS_EVERY_MS);
      }
    })();
    const figures = await runFuzz({
      target: "socket",
      arbitrary: requestCase,
      runs: fuzzRuns(300),
      caseTimeoutMs: CASE_BOUND_MS,
      check: async (c) => {
        if (agent.proc.exitCode !== null) return { ok: false, kind: "crash", detail: `agent exited with ${agent.proc.exitCode}` };
        return judgeResponse(c, await sendRaw(agent.socket, c, CASE_BOUND_MS - 1_000));
      },
    });
    sampling = false;
    await sampler;
    slow.stop();
    const after = await statusLatencyMs();
    console.log(formatFigures(figures));
    console.log(`fuzz socket: slowest case ${figures.slowestInput}`);
    console.log(
      `fuzz socket: dso status answered ${latencies.length} times during the run (${unanswered} unanswered), worst ${Math.max(...latencies).toFixed(0)} ms; after: ${after?.toFixed(0) ?? "no answer"} ms; agent alive: ${agent.proc.exitCode === null}`,
    );
    expect(failureReport(figures)).toBe("");
    expect(agent.proc.exitCode).toBeNull();
    expect(unanswered).toBe(0);
    expect(latencies.length).toBeGreaterThan(0);
    expect(after).toBeDefined();
    expect(agent.logs()).not.toContain("fuzz-socket-value");
  }, 180_000);
});
