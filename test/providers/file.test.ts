import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, realpath, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, createHmac } from "node:crypto";
import { createFileProvider, fileProvider, nodeFileSystem, parseSecretContent, type FileSystemCalls } from "../../providers/file/index.ts";
import type { ProviderClient } from "../../providers/types.ts";

const noLog = { debug() {}, info() {}, warn() {}, error() {} };
const KEY = "a1".repeat(32);
let dir: string;
let outside: string;
let client: ProviderClient;
const signal = new AbortController().signal;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-file-"));
  outside = await mkdtemp(join(tmpdir(), "dso-outside-"));
  await writeFile(join(outside, "stolen"), "host-secret");
  await writeFile(join(dir, "plain"), "s3cr3t-plain\n");
  await writeFile(join(dir, "db.json"), JSON.stringify({ user: "app", port: 5432, opts: { tls: true } }));
  await writeFile(join(dir, "empty.json"), "{}");
  await mkdir(join(dir, "team"));
  await writeFile(join(dir, "team/api"), "k");
  await symlink(join(outside, "stolen"), join(dir, "escape"));
  client = await fileProvider.create({ name: "local", type: "file", config: { path: dir }, fingerprintKey: KEY }, { log: noLog, env: {} });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe("file provider", () => {
  test("a plain file is the single key `value`, byte for byte", async () => {
    const [item] = legacyItems(await client.fetch([{ name: "plain" }], signal));
    expect(item?.value).toEqual({ data: { value: "s3cr3t-plain\n" }, encoding: "utf8" });
  });

  test("<name>.json with an object gives its keys; non-strings are JSON-encoded", async () => {
    const [item] = legacyItems(await client.fetch([{ name: "db" }], signal));
    expect(item?.value?.data).toEqual({ user: "app", port: "5432", opts: '{"tls":true}' });
  });

  test("an empty object is an error, not an empty delivery", async () => {
    const [item] = legacyItems(await client.fetch([{ name: "empty" }], signal));
    expect(item?.error?.code).toBe("CONFIG_INVALID");
  });

  test("names in subdirectories work; traversal, absolute names and symlinks out are refused", async () => {
    const items = legacyItems(await client.fetch(
      [{ name: "team/api" }, { name: "../etc/passwd" }, { name: "/etc/passwd" }, { name: "escape" }, { name: "a\0b" }],
      signal,
    ));
    expect(items[0]?.value?.data).toEqual({ value: "k" });
    for (const item of items.slice(1)) {
      expect(item.value).toBeUndefined();
      expect(item.error?.code).toBe("SECRET_NOT_FOUND");
      expect(item.error?.message).not.toContain("host-secret");
    }
  });

  test("the fingerprint changes when the file changes, and carries no value", async () => {
    const [before] = await client.fingerprint([{ name: "plain" }], signal);
    await writeFile(join(dir, "plain"), "rotated-value");
    const [after] = await client.fingerprint([{ name: "plain" }], signal);
    expect(before?.fingerprint).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(after?.fingerprint).not.toBe(before!.fingerprint!);
    expect(JSON.stringify(after)).not.toContain("rotated-value");
  });

  test("the fingerprint is an HMAC under the agent's key: a guess cannot be checked against it", async () => {
    await writeFile(join(dir, "weak"), "correct-horse");
    const [polled] = await client.fingerprint([{ name: "weak" }], signal);
    const [fetched] = await client.fetch([{ name: "weak" }], signal);
    const guess = createHash("sha256").update("correct-horse").digest("hex");
    expect(polled?.fingerprint).toBe(`hmac-sha256:${createHmac("sha256", Buffer.from(KEY, "hex")).update("correct-horse").digest("hex")}`);
    expect(fetched?.fingerprint).toBe(polled!.fingerprint!);
    expect(JSON.stringify([polled, fetched])).not.toContain(guess.slice(0, 12));
    // Another instance (another key) gives another fingerprint of the same value.
    const other = await fileProvider.create({ name: "other", type: "file", config: { path: dir }, fingerprintKey: "b2".repeat(32) }, { log: noLog, env: {} });
    const [elsewhere] = await other.fingerprint([{ name: "weak" }], signal);
    expect(elsewhere?.fingerprint).not.toBe(polled!.fingerprint!);
  });

  test("without a fingerprint key (an old agent) configure is refused, never an unkeyed hash", async () => {
    const create = fileProvider.create({ name: "old", type: "file", config: { path: dir } }, { log: noLog, env: {} });
    await expect(create).rejects.toThrow("providers.old: the agent sent no fingerprintKey");
  });

  test("a version pin is refused: files have no versions", async () => {
    const [item] = await client.fingerprint([{ name: "plain", version: "3" }], signal);
    expect(item?.error?.message).toContain("no versions");
  });

  test("config.path may be one YAML file of name → string or object", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, "api_key: abc123\ndb:\n  user: app\n  password: pw\n");
    const single = await fileProvider.create({ name: "y", type: "file", config: { path: file }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const items = legacyItems(await single.fetch([{ name: "api_key" }, { name: "db" }, { name: "missing" }], signal));
    expect(items[0]?.value?.data).toEqual({ value: "abc123" });
    expect(items[1]?.value?.data).toEqual({ user: "app", password: "pw" });
    expect(items[2]?.error?.code).toBe("SECRET_NOT_FOUND");
  });

  test("one JSON document: each entry's fingerprint comes from its bytes, equal in polls and fetches, blind to key order and to other entries", async () => {
    const file = join(dir, "all.json");
    const write = (doc: string) => writeFile(file, doc);
    await write('{"api_key": "abc123", "db": {"user": "app", "password": "pw\\u00e9", "port": 5432}}');
    const single = await fileProvider.create({ name: "j", type: "file", config: { path: file }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const refs = [{ name: "api_key" }, { name: "db" }];
    const polled = await single.fingerprint(refs, signal);
    expect(polled.map((i) => i.fingerprint?.startsWith("hmac-sha256:"))).toEqual([true, true]);
    const fetched = legacyItems(await single.fetch(refs, signal));
    expect(fetched[0]?.value?.data).toEqual({ value: "abc123" });
    expect(fetched[1]?.value?.data).toEqual({ user: "app", password: "pwé", port: "5432" });
    expect(fetched.map((i) => i.fingerprint)).toEqual(polled.map((i) => i.fingerprint));
    // The keyed MAC of the entry's canonical JSON: the same value however the document spells it.
    const canonical = '{"password":"pwé","port":5432,"user":"app"}';
    expect(polled[1]?.fingerprint).toBe(`hmac-sha256:${createHmac("sha256", Buffer.from(KEY, "hex")).update(canonical).digest("hex")}`);
    await write('{"db": {"port": 5432, "password": "pw\u00e9", "user": "app"},\n "api_key": "rotated"}');
    const after = await single.fingerprint(refs, signal);
    expect(after[1]?.fingerprint).toBe(polled[1]!.fingerprint!);
    expect(after[0]?.fingerprint).not.toBe(polled[0]!.fingerprint!);
  });

  test("one JSON document: a bad document or entry is a one-line error naming the file or the secret", async () => {
    const file = join(dir, "bad.json");
    const single = await fileProvider.create({ name: "j", type: "file", config: { path: file }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const cases: Array<[string, string, string]> = [
      ['{"a": "x",}', "a", `CONFIG_INVALID secrets file ${file} is not valid JSON`],
      ['["a"]', "a", `CONFIG_INVALID secrets file ${file} must map secret names to values`],
      ['{"a": "x"}', "b", `SECRET_NOT_FOUND secret "b" not found in ${file}`],
      ['{"a": {}}', "a", 'CONFIG_INVALID secret "a": empty object has no keys to deliver'],
      ['{"a": 5}', "a", 'CONFIG_INVALID secret "a": expected a string or an object of keys'],
    ];
    for (const [doc, name, expected] of cases) {
      await writeFile(file, doc);
      for (const items of [await single.fingerprint([{ name }], signal), legacyItems(await single.fetch([{ name }], signal))]) {
        const [code, ...message] = expected.split(" ");
        expect(String(items[0]?.error?.code)).toBe(code!);
        expect(String(items[0]?.error?.message)).toEndWith(message.join(" "));
      }
    }
  });

  test("a file is read into an array on an ArrayBuffer of its own, the size of the file and one byte", async () => {
    await writeFile(join(dir, "owned"), "s3cr3t-owned\n");
    const bytes = await nodeFileSystem.readFile(join(dir, "owned"));
    expect(new TextDecoder().decode(bytes)).toBe("s3cr3t-owned\n");
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength + 1);
  });

  test("unknown config keys and relative paths are refused with the field named", async () => {
    const create = (config: Record<string, string>) =>
      fileProvider.create({ name: "bad", type: "file", config, fingerprintKey: KEY }, { log: noLog, env: {} });
    await expect(create({ path: dir, colour: "red" })).rejects.toThrow("providers.bad.config.colour: unknown key");
    await expect(create({ path: "secrets" })).rejects.toThrow("providers.bad.config.path: must be an absolute path");
  });

  test("parseSecretContent keeps text that merely looks like JSON", () => {
    expect(parseSecretContent("{not json", "x")).toEqual({ value: "{not json" });
  });
});

/** The real file system, with every read counted and every read buffer kept (to check it was zeroed). */
function countingFs(clock: () => number = () => Date.now()) {
  const reads: string[] = [];
  const buffers: Uint8Array[] = [];
  const fs: FileSystemCalls = {
    ...nodeFileSystem,
    async readFile(path) {
      reads.push(path);
      const bytes = await nodeFileSystem.readFile(path);
      buffers.push(bytes);
      return bytes;
    },
    now: clock,
  };
  return { fs, reads, buffers };
}

describe("file provider polls metadata first", () => {
  let metaDir: string;
  beforeAll(async () => {
    metaDir = await mkdtemp(join(tmpdir(), "dso-file-meta-"));
  });
  afterAll(() => rm(metaDir, { recursive: true, force: true }));

  // A clock far ahead: no stamp looks racy, so what is asserted is the stamp comparison alone.
  const farAhead = () => Date.now() + 3_600_000;

  test("an unchanged file is not read again; a changed one is, and its buffer is zeroed", async () => {
    const names = ["a", "b", "c"];
    for (const n of names) await writeFile(join(metaDir, n), `value-of-${n}`);
    const { fs, reads, buffers } = countingFs(farAhead);
    const p = await createFileProvider(fs).create({ name: "m", type: "file", config: { path: metaDir }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const refs = names.map((name) => ({ name }));
    const first = await p.fingerprint(refs, signal);
    expect(reads.length).toBe(3);
    const second = await p.fingerprint(refs, signal);
    expect(reads.length).toBe(3);
    expect(second).toEqual(first);
    await writeFile(join(metaDir, "b"), "a different value");
    const third = await p.fingerprint(refs, signal);
    expect(reads.slice(3)).toEqual([await realpath(join(metaDir, "b"))]);
    expect(third[1]?.fingerprint).not.toBe(first[1]!.fingerprint!);
    expect(third[0]).toEqual(first[0]!);
    for (const bytes of buffers) expect(bytes.every((b) => b === 0)).toBe(true);
    // A fetch reads the file as bytes (and zeroes them too), and agrees with the poll.
    const [fetched] = await p.fetch([{ name: "b" }], signal);
    expect(fetched?.value?.data).toEqual({ value: "a different value" });
    expect(fetched?.fingerprint).toBe(third[1]!.fingerprint!);
    expect(buffers.at(-1)!.every((b) => b === 0)).toBe(true);
  });

  test("a same-size rewrite that restores the mtime is still caught (ctime moves, in ns)", async () => {
    const file = join(metaDir, "same-size");
    const second = new Date("2024-01-01T00:00:00Z");
    await writeFile(file, "AAAAAAAA");
    await utimes(file, second, second);
    const { fs, reads } = countingFs(farAhead);
    const p = await createFileProvider(fs).create({ name: "m", type: "file", config: { path: metaDir }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const [before] = await p.fingerprint([{ name: "same-size" }], signal);
    const statBefore = await stat(file, { bigint: true });
    await writeFile(file, "BBBBBBBB");
    await utimes(file, second, second);
    const statAfter = await stat(file, { bigint: true });
    expect(statAfter.size).toBe(statBefore.size);
    expect(statAfter.mtimeNs).toBe(statBefore.mtimeNs);
    expect(statAfter.ino).toBe(statBefore.ino);
    const [after] = await p.fingerprint([{ name: "same-size" }], signal);
    expect(reads.length).toBe(2);
    expect(after?.fingerprint).not.toBe(before!.fingerprint!);
  });

  test("a file whose ctime is as recent as the look is read again at the next poll (coarse file clocks)", async () => {
    await writeFile(join(metaDir, "fresh"), "just written");
    const { fs, reads } = countingFs(() => Date.now());
    const p = await createFileProvider(fs).create({ name: "m", type: "file", config: { path: metaDir }, fingerprintKey: KEY }, { log: noLog, env: {} });
    await p.fingerprint([{ name: "fresh" }], signal);
    await p.fingerprint([{ name: "fresh" }], signal);
    expect(reads.length).toBe(2);
  });

  test("one YAML file: stat once per poll, read it only when it changed", async () => {
    const file = join(metaDir, "all.yaml");
    await writeFile(file, "one: first\ntwo: second\n");
    const { fs, reads } = countingFs(farAhead);
    const p = await createFileProvider(fs).create({ name: "y", type: "file", config: { path: file }, fingerprintKey: KEY }, { log: noLog, env: {} });
    const refs = [{ name: "one" }, { name: "two" }];
    const first = await p.fingerprint(refs, signal);
    expect(reads.length).toBe(1);
    expect(await p.fingerprint(refs, signal)).toEqual(first);
    expect(reads.length).toBe(1);
    await writeFile(file, "one: first\ntwo: rotated\n");
    const third = await p.fingerprint(refs, signal);
    expect(reads.length).toBe(2);
    expect(third[0]).toEqual(first[0]!);
    expect(third[1]?.fingerprint).not.toBe(first[1]!.fingerprint!);
  });
});
