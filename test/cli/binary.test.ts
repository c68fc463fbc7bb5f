import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { providerTypes } from "../../providers/registry.ts";
import { dsoBinary, runDso } from "../support/dso-binary.ts";

describe("compiled dso binary", () => {
  test("version prints the package version and the embedded commit", async () => {
    const run = await runDso(["version"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toStartWith(`dso ${pkg.version} (commit `);
    const json = await runDso(["version", "--json"]);
    const info = JSON.parse(json.stdout);
    expect(info.version).toBe(pkg.version);
    expect(info.compiled).toBe(true);
    expect(info.commit).toMatch(/^[0-9a-f]{12}(-dirty)?$|^unknown$/);
  });

  test("--help lists the commands that exist", async () => {
    const run = await runDso(["--help"]);
    expect(run.code).toBe(0);
    for (const name of ["version", "config", "doctor", "agent", "status", "ls", "sync", "rotate", "plan", "inject"]) {
      expect(run.stdout).toContain(name);
    }
    expect(run.stdout).not.toMatch(/^\s*provider\s/m);
    expect(run.stdout).not.toMatch(/\|provider\b/);
    expect(run.stdout).not.toContain("\x1b[");
  });

  test("an unknown command is a one-line usage error with exit 2", async () => {
    const run = await runDso(["frobnicate"]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toContain("--help");
  });

  test("an unknown flag is a one-line usage error with exit 2", async () => {
    const run = await runDso(["version", "--frob"]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain('unknown flag "--frob"');
  });

  test("an unknown subcommand of config is a usage error", async () => {
    const run = await runDso(["config", "frob"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frob" for dso config');
  });

  test("a bad --log-level is a usage error", async () => {
    const run = await runDso(["version", "--log-level", "loud"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--log-level must be one of");
  });

  test("dso provider started by hand on a terminal explains it is internal and exits 2", async () => {
    const binary = await dsoBinary();
    // script(1) gives the child a pseudo-terminal, as a person typing the command would.
    const run = Bun.spawnSync(["script", "-qec", `${binary} provider file`, "/dev/null"], { stdin: "ignore" });
    expect(run.exitCode).toBe(2);
    expect(run.stdout.toString()).toContain("dso provider is internal");
  });

  test("dso provider with an unknown type exits non-zero and names the known types", async () => {
    const run = await runDso(["provider", "ibm"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('unknown provider type "ibm"');
    for (const type of providerTypes()) expect(run.stderr).toContain(type);
  });
});

describe("the binary ignores bunfig.toml and .env in its working directory", () => {
  let dir: string;
  const marker = () => join(dir, "preload-ran");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "dso-hostile-"));
    await writeFile(
      join(dir, "evil.ts"),
      `import { writeFileSync } from "node:fs";\nwriteFileSync(process.cwd() + "/preload-ran", "pwned");\n`,
    );
    await writeFile(join(dir, "bunfig.toml"), `preload = ["./evil.ts"]\n`);
    // If .env were read, DSO_CONFIG would point at a missing file and validation would fail.
    await writeFile(join(dir, ".env"), "DSO_CONFIG=/nonexistent/hostile.yaml\n");
    await writeFile(join(dir, "dso.yaml"), "providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: /tmp\n");
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a default-compiled control binary does read them (so this test can fail)", async () => {
    const src = join(dir, "control-src.ts");
    const out = join(dir, "control-bin");
    await writeFile(src, 'console.log(process.env.DSO_CONFIG ?? "unset");\n');
    const build = Bun.spawnSync(["bun", "build", "--compile", src, "--outfile", out], { cwd: tmpdir() });
    expect(build.success).toBe(true);
    const run = Bun.spawnSync([out], { cwd: dir, env: { PATH: process.env.PATH! } });
    expect(run.stdout.toString().trim()).toBe("/nonexistent/hostile.yaml");
    expect(existsSync(marker())).toBe(true);
    await rm(marker(), { force: true });
  });

  test("dist/dso neither runs the preload nor takes .env values", async () => {
    const run = await runDso(["config", "validate"], { cwd: dir });
    expect(existsSync(marker())).toBe(false);
    expect(run.stderr).not.toContain("hostile");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("dso.yaml: valid");
  });
});
