/**
 * Hostile secret values (issue 13) through the file provider into a container's --tmpfs target,
 * on the real daemon with the compiled agent: empty, every byte value, invalid UTF-8, 1 MiB,
 * JSON that is not an object, plus a few seeded random binary values. The bytes read back in
 * the container (cat | base64) must equal the source file's bytes exactly; a mapping that cannot
 * apply (a key of a non-object secret) must be a clear error naming the secret and the key.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import fc from "fast-check";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { fuzzRuns, fuzzSeed } from "../support/fuzz.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.2; done';

const FIXED: Record<string, Uint8Array> = {
  empty: new Uint8Array(),
  "all-bytes": Uint8Array.from({ length: 256 }, (_, i) => i),
  "invalid-utf8": Uint8Array.from([0x61, 0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0x62]),
  "one-mib": Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + 7) & 0xff),
  "json-array": new TextEncoder().encode('["a", 1, null]'),
  "json-number": new TextEncoder().encode("42"),
  "json-string": new TextEncoder().encode('"just a string"'),
  "json-null": new TextEncoder().encode("null"),
};
/** Non-object JSON secrets with a mapping: there is no key to map. */
const MAPPED = ["json-array", "json-number", "json-string", "json-null"];

let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
const containers: string[] = [];
const values = new Map<string, Uint8Array>(Object.entries(FIXED));

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-fuzz-values-"));
  await mkdir(join(dir, "secrets"));
  const random = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 4096 }), { seed: fuzzSeed(), numRuns: fuzzRuns(2) });
  random.forEach((bytes, i) => values.set(`random-${i}`, bytes));
  for (const [name, bytes] of values) await writeFile(join(dir, "secrets", name), bytes);
  // Named by index: a name holding a delivered value ("null") would be masked in the log by the redactor.
  for (const [i, name] of MAPPED.entries()) await writeFile(join(dir, "secrets", `mapped-${i}`), FIXED[name]!);
  const mapped = MAPPED.map((_name, i) => `  - name: mapped-${i}\n    mappings: { password: out-${i} }\n`).join("");
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  watch:\n    polling_interval: 1s\nsecrets:\n${mapped}`,
  );
  agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost: d.host, name: "fuzz-values" });
}, 60_000);

afterAll(async () => {
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await agent?.stop("SIGTERM");
  await rm(dir, { recursive: true, force: true });
});

async function run(name: string, secrets: string[]): Promise<string> {
  const c = await docker.createContainer({
    name: `fuzz-values-${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", IDLE],
    Labels: { "dso.reloader": "true", "dso.secrets": secrets.join(",") },
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
  });
  containers.push(c.id);
  await c.start();
  return c.id;
}

describe("hostile secret values", () => {
  test("delivered bytes equal the source bytes exactly: empty, all 256 byte values, invalid UTF-8, 1 MiB, non-object JSON, random binary", async () => {
    const names = [...values.keys()];
    const id = await run("bytes", names);
    // One exec reads every file back once all are there: name, then its base64 on one line.
    const script = `for f in ${names.join(" ")}; do test -e /run/secrets/$f || exit 1; done; for f in ${names.join(" ")}; do echo "$f $(base64 /run/secrets/$f | tr -d '\\n')"; done`;
    const out = await eventually("every file in the container", async () => {
      const r = await execIn(docker, id, ["sh", "-c", script]);
      return r.code === 0 ? r.stdout : undefined;
    });
    const delivered = new Map(out.trim().split("\n").map((line) => [line.split(" ")[0]!, line.split(" ")[1] ?? ""] as const));
    const mismatched: string[] = [];
    for (const name of names) {
      const got = delivered.get(name) ?? "";
      if (got !== Buffer.from(values.get(name)!).toString("base64")) mismatched.push(`${name} (${values.get(name)!.length} bytes): got ${Buffer.from(got, "base64").length} bytes`);
    }
    console.log(`fuzz values: ${names.length} values delivered, ${mismatched.length} differ from the source${mismatched.length ? `: ${mismatched.join("; ")}` : ""}`);
    expect(mismatched).toEqual([]);
  }, 120_000);

  test("a mapping of a JSON secret that is not an object is a clear error naming the secret and the key", async () => {
    await run("mapped", MAPPED.map((_n, i) => `mapped-${i}`));
    const line = await agent.waitForLog(/delivery incomplete.*fuzz-values-mapped/, 30_000);
    const { problems } = JSON.parse(line) as { problems: string };
    for (const i of MAPPED.keys()) expect(problems).toContain(`secret "mapped-${i}": key(s) "password" not found; it has "value"`);
    expect(problems).not.toContain("just a string");
  }, 60_000);
});
