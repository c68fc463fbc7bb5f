/**
 * `dso secret set|get|list|rm` (issue 22: the Go DSO's `docker dso secret set`): the value comes
 * from stdin or a prompt without echo, never argv; files are 0600 in 0700 directories, replaced
 * atomically; `get` masks unless --reveal; a store open to others is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dsoBinary } from "../support/dso-binary.ts";

const VALUE = "secret-cli-planted-Q7v2";
let dir: string;
let config: string;

async function dso(args: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([await dsoBinary(), ...args, "--config", config], {
    env: { PATH: process.env.PATH! },
    stdin: new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

const mode = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-secret-"));
  config = join(dir, "dso.yaml");
  // A relative path, as the Go DSO's local example writes it: next to dso.yaml.
  await writeFile(config, "providers:\n  local:\n    type: file\n    config:\n      path: ./store\n");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("dso secret", () => {
  test("set from stdin: 0600 in 0700 directories, one trailing newline dropped, replaced by rename", async () => {
    const set = await dso(["secret", "set", "app/db"], `${VALUE}\n`);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout + set.stderr).not.toContain(VALUE);
    const file = join(dir, "store", "app", "db");
    expect(await readFile(file, "utf8")).toBe(VALUE);
    expect([await mode(join(dir, "store")), await mode(join(dir, "store", "app")), await mode(file)]).toEqual(["700", "700", "600"]);
    const inode = (await stat(file)).ino;
    expect((await dso(["secret", "set", "app/db"], `${VALUE}-2`)).code).toBe(0);
    expect(await readFile(file, "utf8")).toBe(`${VALUE}-2`);
    expect((await stat(file)).ino).not.toBe(inode);
    expect(await readdir(join(dir, "store", "app"))).toEqual(["db"]);
  });

  test("a value on the command line is refused and written nowhere", async () => {
    const run = await dso(["secret", "set", "argv_value", "hunter2-on-argv"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("takes no value on the command line");
    expect(await readdir(join(dir, "store"))).not.toContain("argv_value");
  });

  test("get masks unless --reveal; list shows names and sizes only; rm removes", async () => {
    const masked = await dso(["secret", "get", "app/db"]);
    expect(masked.code).toBe(0);
    expect(masked.stdout).toContain(`(${VALUE.length + 2} bytes; --reveal to print)`);
    expect(masked.stdout).not.toContain(VALUE);
    expect((await dso(["secret", "get", "app/db", "--reveal"])).stdout).toBe(`${VALUE}-2`);
    const list = await dso(["secret", "list", "--json"]);
    expect(JSON.parse(list.stdout).secrets.map((s: { name: string; bytes: number }) => [s.name, s.bytes])).toEqual([["app/db", VALUE.length + 2]]);
    expect(list.stdout).not.toContain(VALUE);
    expect((await dso(["secret", "rm", "app/db"])).code).toBe(0);
    expect((await dso(["secret", "get", "app/db"])).stderr).toContain("SECRET_NOT_FOUND");
  });

  test("names that leave the store and stores open to others are refused", async () => {
    expect((await dso(["secret", "set", "../escape"], "x")).stderr).toContain("must not have empty, . or .. segments");
    await chmod(join(dir, "store"), 0o755);
    const open = await dso(["secret", "set", "db"], "x");
    expect(open.code).not.toBe(0);
    expect(open.stderr).toContain("open to group or others");
    await chmod(join(dir, "store"), 0o700);
  });

  test("on a terminal the value is typed at a prompt without echo", async () => {
    const command = `${await dsoBinary()} secret set typed --config ${config}`;
    const proc = Bun.spawn(["script", "-qec", command, "/dev/null"], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH! } });
    // Typed only once the prompt is shown: echo is off by then (typing earlier, the terminal
    // itself echoes it, as it would for a user typing ahead).
    const reader = proc.stdout.getReader();
    let out = "";
    for (const deadline = Date.now() + 20_000; !out.includes("not echoed") && Date.now() < deadline; ) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    proc.stdin.write(`${VALUE}\r`);
    await proc.stdin.flush();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    const code = await proc.exited;
    expect(code).toBe(0);
    expect(out).toContain("not echoed");
    expect(out).not.toContain(VALUE);
    expect(await readFile(join(dir, "store", "typed"), "utf8")).toBe(VALUE);
  });
});
