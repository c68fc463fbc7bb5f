/** Which agent socket the CLI and doctor call when no --socket or $DSO_SOCKET says (the EACCES case: test/agent/socket-authz.test.ts). */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reachableSocket } from "../../src/api/client.ts";

const dir = mkdtempSync(join(tmpdir(), "dso-reach-"));
const listening = join(dir, "group.sock");
const server = Bun.listen({ unix: listening, socket: { data() {} } });
afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

describe("reachableSocket", () => {
  test("the first candidate this process may connect to", () => {
    expect(reachableSocket([join(dir, "plugin.sock"), listening])).toBe(listening);
    expect(reachableSocket([listening, join(dir, "other.sock")])).toBe(listening);
  });

  test("none reachable: the first, so the error names the usual path", () => {
    expect(reachableSocket([join(dir, "a.sock"), join(dir, "b.sock")])).toBe(join(dir, "a.sock"));
  });
});
