/**
 * Hostile input to the real agent's unix socket (issue 13): random methods, paths, headers and
 * bodies on the control API and the Docker plugin protocol, with slow clients beside them. The
 * compiled agent runs with the file provider against the test daemon; `dso status` is asked
 * throughout and after (its worst latency is printed: a figure, not a threshold).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AgentProcess } from "../support/agent-process.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { failureReport, formatFigures, fuzzRuns } from "../support/fuzz.ts";
import { SOCKET_PLANTED_VALUE, fuzzSocket, startSocketAgent } from "./socket-cases.ts";

let agent: AgentProcess;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ agent, cleanup } = await startSocketAgent((await ensureDocker()).host));
}, 60_000);

afterAll(async () => {
  await cleanup?.();
});

describe("hostile requests on the agent socket", () => {
  test("every answer is a JSON error with a code or a valid reply; the agent stays up and `dso status` answers", async () => {
    const { figures, latencies, unanswered, after } = await fuzzSocket(agent, fuzzRuns(200));
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
    expect(agent.logs()).not.toContain(SOCKET_PLANTED_VALUE);
  }, 180_000);
});
