/**
 * `dso config validate` and `dso doctor` check what the agent needs of the file system at start
 * (issue 22: validate said valid, then the agent refused `agent.audit.output: … ENOENT`, and a
 * read-only image restart-looped on EROFS).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimePathProblems } from "../../src/doctor/runtime-paths.ts";
import { runDso } from "../support/dso-binary.ts";

let dir: string;
let readOnly: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-paths-"));
  readOnly = join(dir, "ro");
  await mkdir(readOnly);
  const mounted = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", readOnly]);
  if (mounted.exitCode !== 0) throw new Error(`mount failed: ${mounted.stderr}`);
});

afterAll(async () => {
  Bun.spawnSync(["umount", readOnly]);
  await rm(dir, { recursive: true, force: true });
});

const agent = (over: Record<string, unknown>) =>
  ({ agent: { audit: { enabled: false, output: "stderr" }, volumesRoot: join(dir, "volumes"), socket: join(dir, "dso.sock"), ...over } }) as never;

test("a missing audit directory and read-only roots are named; a writable setup passes", () => {
  expect(runtimePathProblems(agent({}))).toEqual([]);
  expect(runtimePathProblems(agent({ audit: { enabled: true, output: join(dir, "missing", "audit.log") } }))).toEqual([
    `agent.audit.output: directory ${join(dir, "missing")} does not exist (the agent creates the file, not its directory)`,
  ]);
  expect(runtimePathProblems(agent({ audit: { enabled: true, output: join(readOnly, "audit.log") }, volumesRoot: join(readOnly, "volumes"), socket: join(readOnly, "dso.sock") }))).toEqual([
    `agent.audit.output: ${join(readOnly, "audit.log")} is on a read-only file system`,
    `agent.volumes_root: ${join(readOnly, "volumes")} is on a read-only file system (mount a writable /run/dso)`,
    `agent.socket: ${readOnly} is on a read-only file system`,
  ]);
});

test("dso config validate and dso doctor refuse what the agent would refuse", async () => {
  const config = join(dir, "dso.yaml");
  await writeFile(config, `agent:\n  audit:\n    output: /var/log/dso-missing-${process.pid}/audit.log\n`);
  const env = { PATH: process.env.PATH, DOCKER_HOST: `unix://${dir}/none.sock` };
  const validate = await runDso(["config", "validate", "--config", config], { env });
  expect(validate.code).toBe(1);
  expect(validate.stderr).toContain(`agent.audit.output: directory /var/log/dso-missing-${process.pid} does not exist`);
  const doctor = JSON.parse((await runDso(["doctor", "--json", "--config", config, "--socket", join(dir, "dso.sock")], { env })).stdout);
  const check = doctor.checks.find((c: { check: string }) => c.check === "config");
  expect(check.status).toBe("fail");
  expect(check.detail).toContain("the agent would refuse it here");
});
