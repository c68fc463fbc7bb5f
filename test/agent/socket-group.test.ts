/** agent.socket_group names are read from /etc/group itself: the image and plugin rootfs have no getent. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { groupId } from "../../src/agent/control-server.ts";

const dir = mkdtempSync(join(tmpdir(), "dso-group-"));
const file = join(dir, "group");
writeFileSync(file, "root:x:0:\ndocker:x:998:alice,bob\ndso-admins:x:1234:\nbroken:x:notanumber:\n# comment\n\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("groupId", () => {
  test("a numeric gid passes through without reading the file", () => {
    expect(groupId("4242", join(dir, "absent"))).toBe(4242);
  });

  test("a name is looked up in the group file", () => {
    expect(groupId("docker", file)).toBe(998);
    expect(groupId("dso-admins", file)).toBe(1234);
    expect(groupId("root", file)).toBe(0);
  });

  test("an unknown name, a prefix of a name or a malformed gid is a config error naming the field", () => {
    for (const name of ["nosuch", "dock", "broken"]) {
      expect(() => groupId(name, file)).toThrow(`agent.socket_group: group "${name}" is not in ${file}`);
    }
  });

  test("no group file at all is the same config error", () => {
    expect(() => groupId("dso-no-such-group-4711", join(dir, "absent"))).toThrow("agent.socket_group");
  });

  test.skipIf(!Bun.which("getent"))("a name only NSS knows is found through getent where the host has it", () => {
    expect(groupId("root", join(dir, "absent"))).toBe(0);
  });
});
