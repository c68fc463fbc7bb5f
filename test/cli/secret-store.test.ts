/** The `dso secret` store's writes (issue 22 review): parents created, no temporary file left with the value. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSecret } from "../../src/cli/secret-store.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-store-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("a store whose parents do not exist yet is created with them, 0700", () => {
  const root = join(dir, "srv", "dso", "secrets");
  writeSecret(root, "app/db", new TextEncoder().encode("v"));
  expect(readFileSync(join(root, "app", "db"), "utf8")).toBe("v");
  expect((statSync(root).mode & 0o777).toString(8)).toBe("700");
});

test("a rename that fails leaves no temporary file holding the value", () => {
  const root = join(dir, "store2");
  mkdirSync(join(root, "x"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "x", "keep"), "");
  expect(() => writeSecret(root, "x", new TextEncoder().encode("planted-temp-value"))).toThrow();
  expect(readdirSync(root)).toEqual(["x"]);
});
