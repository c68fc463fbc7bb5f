import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, auditRecord, fileSink, openAuditLog, stderrSink } from "../../src/audit/audit-log.ts";
import { DsoError } from "../../src/errors.ts";
import { forgetSecretValue, registerSecretValue } from "../../src/log/redact.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-audit-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const lines = async (path: string) => (await readFile(path, "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);

describe("the audit trail", () => {
  test("text from a container or caller cannot move a terminal or forge a line: C1, DEL, separators and bidi controls escaped", () => {
    const written: string[] = [];
    const log = new AuditLog({ write: (line) => void written.push(line), close: () => {} });
    const hostile = "app\u009b31m\u007f\u2028forged\u202eevil";
    log.record({ event: "delivery", outcome: "ok", container: { id: "c".repeat(64), name: hostile }, secrets: [{ name: "db" }] });
    expect(written).toHaveLength(1);
    const line = written[0]!;
    expect(line).not.toMatch(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(line.trimEnd().split("\n")).toHaveLength(1);
    // Still the same JSON value: the name reads back whole.
    expect((JSON.parse(line) as { container: { name: string } }).container.name).toBe(hostile);
  });

  test("one JSON line per event, appended to the file the user names, created 0600", async () => {
    const path = join(dir, "audit.log");
    await writeFile(path, "", { mode: 0o600 });
    const log = openAuditLog(path);
    log.record({
      event: "delivery",
      outcome: "ok",
      container: { id: "a".repeat(64), name: "app" },
      secrets: [{ name: "db_password", version: "0123456789abcdef0123" }],
      mode: "exec",
      path: "/run/secrets",
      trigger: "poll",
      durationMs: 12.4,
    });
    log.record({ event: "rotation", outcome: "DELIVERY_FAILED", container: { id: "b".repeat(64) }, secrets: [{ name: "db_password" }], strategy: "signal", error: new DsoError("DELIVERY_FAILED", "exec tar failed") });
    log.close();
    const [delivery, rotation] = await lines(path);
    expect(delivery).toEqual({
      tag: "audit",
      v: 1,
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      event: "delivery",
      outcome: "ok",
      container: { id: "a".repeat(64), name: "app" },
      secrets: [{ name: "db_password", version: "0123456789ab" }],
      mode: "exec",
      path: "/run/secrets",
      trigger: "poll",
      duration_ms: 12,
    });
    expect(rotation).toMatchObject({ event: "rotation", outcome: "DELIVERY_FAILED", strategy: "signal", error_code: "DELIVERY_FAILED", error: "exec tar failed" });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const again = openAuditLog(path);
    again.record({ event: "api", outcome: "ok", request: { method: "POST", path: "/v1/rotate", status: 200 }, callerUid: 0 });
    again.close();
    expect(await lines(path)).toHaveLength(3);
  });

  test("only schema fields are written; a value that slipped into an error message is redacted", () => {
    const planted = "planted-secret-value-42";
    registerSecretValue(planted);
    try {
      const written: string[] = [];
      const log = new AuditLog(stderrSink({ write: (t: string) => written.push(t) }));
      log.record({ event: "delivery", outcome: "INTERNAL", error: new Error(`sdk said ${planted}`), ...({ value: planted, files: [{ data: planted }] } as object) } as never);
      expect(written).toHaveLength(1);
      expect(written[0]).toEndWith("\n");
      expect(written[0]).not.toContain(planted);
      expect(JSON.parse(written[0]!)).toMatchObject({ tag: "audit", error: "sdk said [REDACTED]" });
      expect(Object.keys(JSON.parse(written[0]!))).not.toContain("value");
    } finally {
      forgetSecretValue(planted);
    }
  });

  test("refuses a symlink as output (the agent runs as root)", async () => {
    const target = join(dir, "elsewhere");
    await writeFile(target, "");
    await symlink(target, join(dir, "link.log"));
    expect(() => fileSink(join(dir, "link.log"))).toThrow("is a symbolic link");
    expect(() => fileSink(dir)).toThrow();
  });

  test("a Mount and an API call carry their own fields", () => {
    expect(auditRecord({ event: "mount", outcome: "SECRET_NOT_FOUND", volume: "api-secrets", mountId: "m1", mode: "plugin" }, new Date(0))).toEqual({
      tag: "audit",
      v: 1,
      time: "1970-01-01T00:00:00.000Z",
      event: "mount",
      outcome: "SECRET_NOT_FOUND",
      mode: "plugin",
      volume: "api-secrets",
      mount_id: "m1",
    });
  });
});
