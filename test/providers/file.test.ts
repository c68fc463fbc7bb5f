import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileProvider, parseSecretContent } from "../../providers/file/index.ts";
import type { ProviderClient } from "../../providers/types.ts";

const noLog = { debug() {}, info() {}, warn() {}, error() {} };
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
  client = await fileProvider.create({ name: "local", type: "file", config: { path: dir } }, { log: noLog, env: {} });
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
    expect(before?.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(after?.fingerprint).not.toBe(before!.fingerprint!);
    expect(JSON.stringify(after)).not.toContain("rotated-value");
  });

  test("a version pin is refused: files have no versions", async () => {
    const [item] = await client.fingerprint([{ name: "plain", version: "3" }], signal);
    expect(item?.error?.message).toContain("no versions");
  });

  test("config.path may be one YAML file of name → string or object", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, "api_key: abc123\ndb:\n  user: app\n  password: pw\n");
    const single = await fileProvider.create({ name: "y", type: "file", config: { path: file } }, { log: noLog, env: {} });
    const items = legacyItems(await single.fetch([{ name: "api_key" }, { name: "db" }, { name: "missing" }], signal));
    expect(items[0]?.value?.data).toEqual({ value: "abc123" });
    expect(items[1]?.value?.data).toEqual({ user: "app", password: "pw" });
    expect(items[2]?.error?.code).toBe("SECRET_NOT_FOUND");
  });

  test("unknown config keys and relative paths are refused with the field named", async () => {
    const create = (config: Record<string, string>) =>
      fileProvider.create({ name: "bad", type: "file", config }, { log: noLog, env: {} });
    await expect(create({ path: dir, colour: "red" })).rejects.toThrow("providers.bad.config.colour: unknown key");
    await expect(create({ path: "secrets" })).rejects.toThrow("providers.bad.config.path: must be an absolute path");
  });

  test("parseSecretContent keeps text that merely looks like JSON", () => {
    expect(parseSecretContent("{not json", "x")).toEqual({ value: "{not json" });
  });
});
