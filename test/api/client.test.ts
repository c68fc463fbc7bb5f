/** The contract's client against a real unix socket: error codes come through, a foreign reply is named. */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { callRoute } from "../../src/api/client.ts";
import { ErrorReplySchema } from "../../src/api/contract.ts";
import { checkAgent, type DoctorContext } from "../../src/doctor/checks.ts";
import { cliErrorLine, DsoError, ERROR_CODES } from "../../src/errors.ts";

const dirs: string[] = [];
const servers: { stop(force?: boolean): unknown }[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.stop(true);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function agentAnswering(status: number, body: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "dso-api-client-"));
  dirs.push(dir);
  const socket = join(dir, "dso.sock");
  servers.push(Bun.serve({ unix: socket, fetch: () => Response.json(body, { status }) }));
  return socket;
}

const STATUS = {
  agent: { version: "9.9.9", pid: 4242, startedAt: "2026-01-01T00:00:00Z", socket: "/run/dso.sock", cache: false, pollingIntervalMs: 60_000, hardening: { dumpable: false, coreDumps: false } },
  providers: [{ name: "f", type: "file", state: "ready", healthy: true, pid: 77, restarts: 0 }],
  secrets: [],
};

describe("the control API client", () => {
  test("the error reply schema takes every error code and no other", () => {
    for (const code of ERROR_CODES) expect(v.is(ErrorReplySchema, { error: { code, message: "m" } })).toBe(true);
    expect(v.is(ErrorReplySchema, { error: { code: "NOT_A_CODE", message: "m" } })).toBe(false);
  });

  test("an agent's error keeps its code, and the CLI line shows it", async () => {
    const socket = agentAnswering(404, { error: { code: "SECRET_NOT_FOUND", message: "secret db is not in dso.yaml" } });
    const error = await callRoute(socket, "rotate", { secret: "db" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DsoError);
    expect(error).toMatchObject({ code: "SECRET_NOT_FOUND", message: "secret db is not in dso.yaml" });
    expect(cliErrorLine(error)).toBe("dso: SECRET_NOT_FOUND: secret db is not in dso.yaml");
  });

  test("a code this dso does not know is INTERNAL, with the agent's code kept in the message", async () => {
    const socket = agentAnswering(500, { error: { code: "FROM_THE_FUTURE", message: "new failure" } });
    await expect(callRoute(socket, "status")).rejects.toMatchObject({ code: "INTERNAL", message: "FROM_THE_FUTURE: new failure" });
  });

  test("usage errors print without a code", () => {
    expect(cliErrorLine(new DsoError("USAGE", 'unknown command "x"'))).toBe('dso: unknown command "x"');
  });
});

describe("dso doctor reads the agent through the contract's client", () => {
  test("a status reply gives the agent's version, pid, hardening and provider pids", async () => {
    const ctx: DoctorContext = { env: {}, socketFlag: agentAnswering(200, STATUS) };
    expect(await checkAgent(ctx)).toMatchObject({ status: "ok", detail: expect.stringContaining("agent 9.9.9 answers on") });
    expect(ctx.agent).toEqual({ pid: 4242, hardening: { dumpable: false, coreDumps: false }, providerPids: [77] });
  });

  test("a reply outside the contract is a warning naming the mismatch, not a pass", async () => {
    const ctx: DoctorContext = { env: {}, socketFlag: agentAnswering(200, { agent: { version: 1 } }) };
    expect(await checkAgent(ctx)).toMatchObject({ status: "warn", detail: expect.stringContaining("does not match this dso's contract") });
    expect(ctx.agent).toBeUndefined();
  });
});
