import { describe, expect, test } from "bun:test";
import { extract } from "tar-stream";
import { nameLinkEntries, packTar, versionEntries } from "../../src/delivery/tar.ts";

describe("tar streamer packer", () => {
  test("packs the version dir and files with mode, numeric owner and the name links", async () => {
    const files = [{ name: "db", content: new TextEncoder().encode("pw"), mode: 0o440, uid: 1000, gid: 1001 }];
    const mtime = new Date(1_700_000_000_000);
    const tar = await packTar([...versionEntries("..dso_v1", files, mtime), ...nameLinkEntries(files, mtime)]);
    const seen: Array<{ name: string; type?: string | null; mode?: number; uid?: number; gid?: number; linkname?: string | null; body: string; uname?: string }> = [];
    const reader = extract();
    reader.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: unknown) => {
        chunks.push(chunk as Buffer);
      });
      stream.on("end", () => {
        seen.push({ ...header, body: Buffer.concat(chunks).toString() });
        next();
      });
    });
    const done = new Promise<void>((resolve) => reader.on("finish", () => resolve()));
    reader.end(tar);
    await done;
    expect(seen.map((e) => [e.name, e.type])).toEqual([
      ["..dso_v1/", "directory"],
      ["..dso_v1/db", "file"],
      ["db", "symlink"],
    ]);
    expect(seen[1]).toMatchObject({ mode: 0o440, uid: 1000, gid: 1001, body: "pw", uname: "" });
    expect(seen[2]?.linkname).toBe("..data/db");
  });
});
