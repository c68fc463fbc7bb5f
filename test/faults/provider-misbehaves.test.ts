/**
 * Providers that misbehave on their pipes, against the agent's supervisor run in a process of its
 * own (fixtures/supervise.ts) so that its memory can be measured: one that floods stderr (calls
 * are still answered; re-logging is capped at STDERR_LINES_PER_SECOND, a line at 64 KiB), one
 * that stops reading its stdin (calls time out, the child is killed and restarted), one that
 * answers garbage (RPC_PROTOCOL, restart after backoff). Bound: RSS grows < 64 MiB (a frame is
 * capped at MAX_FRAME_BYTES, 4 MiB; a stderr line at 64 KiB).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { STDERR_LINES_PER_SECOND } from "../../src/rpc/supervisor.ts";

const HARNESS = join(import.meta.dir, "fixtures/supervise.ts");
const BOUND_KIB = 64 * 1024;

interface Outcome {
  mode: string;
  before: number;
  after: number;
  seconds: number;
  outcomes: Record<string, number>;
  relogged: number;
  restarts: number;
}

async function supervise(mode: string, env: Record<string, string> = {}): Promise<Outcome> {
  const run = Bun.spawn([process.execPath, HARNESS, mode], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
  if (code !== 0) throw new Error(`supervise ${mode} exited ${code}: ${err.slice(-2000)}`);
  const result = JSON.parse(out.trim().split("\n").at(-1)!) as Outcome;
  console.log(
    `misbehaving provider (${mode}): calls ${JSON.stringify(result.outcomes)}, restarts ${result.restarts}, lines re-logged ${result.relogged}, ` +
      `supervisor RSS ${(result.before / 1024).toFixed(1)} → ${(result.after / 1024).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`,
  );
  return result;
}

describe("providers that misbehave on their pipes", () => {
  test("floods stderr (40 MiB): every call answered, the log capped, memory bounded", async () => {
    const r = await supervise("flood", { FLOOD_MB: "40" });
    expect(r.outcomes).toEqual({ ok: 20 });
    expect(r.restarts).toBe(0);
    // 20 calls 50 ms apart: a few seconds of flood, at most STDERR_LINES_PER_SECOND a second (+1 summary each).
    expect(r.relogged).toBeLessThanOrEqual((STDERR_LINES_PER_SECOND + 1) * (Math.ceil(r.seconds) + 2));
    expect(r.after - r.before).toBeLessThan(BOUND_KIB);
  }, 60_000);

  test("stops reading its stdin: calls time out, the child is killed and restarted, memory bounded", async () => {
    const r = await supervise("deaf");
    expect(r.outcomes).toEqual({ PROVIDER_TIMEOUT: 100 });
    expect(r.restarts).toBeGreaterThanOrEqual(1);
    expect(r.after - r.before).toBeLessThan(BOUND_KIB);
  }, 60_000);

  test("answers garbage: RPC_PROTOCOL, restarted after backoff each time", async () => {
    const r = await supervise("garbage");
    expect(r.outcomes).toEqual({ RPC_PROTOCOL: 5 });
    expect(r.restarts).toBeGreaterThanOrEqual(4);
    expect(r.after - r.before).toBeLessThan(BOUND_KIB);
  }, 60_000);
});
