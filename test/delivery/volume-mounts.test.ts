/**
 * The pieces behind DSO-volume isolation (issue 18, findings 4-6) that need no daemon: a volume's
 * tmpfs size, the mount table parser (root field, propagation), and the private-directory rule
 * for the volume root (closed when ours and unwritable by others, refused otherwise).
 */
// needs root: a directory is given another owner (chown).
import { afterAll, describe, expect, test } from "bun:test";
import { chmod, chown, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tmpfsSizeFor, VOLUME_TMPFS_SLACK_BYTES } from "../../src/delivery/plugin/volume-mounts.ts";
import { mountOf, parseMountinfo, securePrivateDir } from "../../src/delivery/tmpfs.ts";

const file = (bytes: number) => ({ name: `f${bytes}`, content: new Uint8Array(bytes), uid: 0, gid: 0, mode: 0o400 });
const work = await mkdtemp(join(tmpdir(), "dso-volmounts-"));
afterAll(() => rm(work, { recursive: true, force: true }));

describe("a DSO volume's tmpfs size", () => {
  test("two copies of the files in whole pages, plus the slack", () => {
    expect(tmpfsSizeFor([])).toBe(VOLUME_TMPFS_SLACK_BYTES);
    expect(tmpfsSizeFor([file(1), file(4096), file(4097)])).toBe(2 * 4 * 4096 + VOLUME_TMPFS_SLACK_BYTES);
  });
});

describe("mountinfo", () => {
  const table = [
    "36 25 0:32 / /run/dso/volumes rw,nosuid shared:5 - tmpfs tmpfs rw,mode=700",
    "37 25 0:33 / /srv/slave rw master:7 - tmpfs tmpfs rw",
    "38 25 254:0 /var/tmp/disk /run rw - ext4 /dev/vda rw",
    "39 25 0:34 /sub\\040dir /data rw shared:9 master:2 - tmpfs tmpfs rw",
  ].join("\n");
  const entries = parseMountinfo(table);

  test("a bind of a directory shows its root; shared, slave, and shared-and-slave (sends nothing back to its master)", () => {
    expect(mountOf("/run/secrets", entries)).toMatchObject({ mountPoint: "/run", root: "/var/tmp/disk", fsType: "ext4", propagation: "private" });
    expect(mountOf("/run/dso/volumes/v", entries)).toMatchObject({ root: "/", fsType: "tmpfs", propagation: "shared" });
    expect(mountOf("/srv/slave", entries)?.propagation).toBe("slave");
    expect(mountOf("/data/x", entries)).toMatchObject({ root: "/sub dir", propagation: "slave" });
  });
});

describe("the volume root must be private", () => {
  const hint = "mount -t tmpfs -o mode=0700 tmpfs <root>";

  test("ours and unwritable by others: closed to 0700", async () => {
    const dir = join(work, "old");
    await mkdir(dir, { mode: 0o711 });
    await chmod(dir, 0o711);
    expect(await securePrivateDir(dir, "volume root", hint)).toBe("closed");
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(await securePrivateDir(dir, "volume root", hint)).toBe("already");
  });

  test("1777, or owned by another uid: refused with one line naming the directory", async () => {
    const open = join(work, "open");
    await mkdir(open);
    await chmod(open, 0o1777);
    await expect(securePrivateDir(open, "volume root", hint)).rejects.toThrow(`volume root ${open} is refused: its mode 1777 lets others in`);
    const theirs = join(work, "theirs");
    await mkdir(theirs, { mode: 0o700 });
    await chown(theirs, 4321, 4321);
    await expect(securePrivateDir(theirs, "volume root", hint)).rejects.toThrow("owned by uid 4321");
  });
});
