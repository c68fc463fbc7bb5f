/**
 * `dso up` / `dso down` (issue 22) with Debian's docker-compose, the real daemon and the compiled
 * agent: a compose file written as a Go DSO user writes it (dso:// and dsofile:// references in a
 * service's environment, found by compose's own discovery: no -f) comes up with the files present
 * before the entrypoint and the value in the variable, rotates, stays compose's project, and the
 * user's file is never modified and no value reaches compose's argv, environment or the disk.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../../support/agent-process.ts";
import { eventually, execIn } from "../../support/container-exec.ts";
import { ensureDocker, privateDaemonStarted, restartDocker } from "../../support/docker-daemon.ts";
import { DSO_BINARY as DSO, dsoBinary } from "../../support/dso-binary.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../../support/test-images.ts";

const PLUGIN_DIR = "/run/docker/plugins";
const PLANTED = {
  dbOne: "up-planted-db-ONE-7c3",
  dbTwo: "up-planted-db-TWO-1d8",
  token: "up-planted-token-5e2",
};
const PROJECT = `dsoup${process.pid}`;

// The Go DSO's README form, adapted only for the image and the network of the test daemon.
const COMPOSE = `version: "3.8"
services:
  app:
    image: ${BUSYBOX_IMAGE}
    network_mode: none
    command: ["sh", "-c", "echo started with $$(wc -c < $$POSTGRES_PASSWORD_FILE) byte file; trap 'exit 0' TERM; while true; do sleep 1; done"]
    environment:
      POSTGRES_PASSWORD_FILE: dsofile://db_password
      API_TOKEN_FILE: dsofile://api#token
      DB_PASSWORD: dso://db_password
      PLAIN: untouched
`;

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let projectDir: string;
let secretsDir: string;
let tmp: string;
let agent: AgentProcess;
let driver: string;
let link: string;
let composeLog: string;

async function dso(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([await dsoBinary(), ...args], {
    cwd: projectDir,
    env: { PATH: `${join(dir, "bin")}:${process.env.PATH!}`, DOCKER_HOST: dockerHost, DSO_VOLUME_DRIVER: driver, TMPDIR: tmp },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function plainCompose(args: string[]): Promise<{ code: number; stdout: string }> {
  const proc = Bun.spawn(["docker-compose", "-p", PROJECT, "--no-ansi", ...args], {
    cwd: projectDir,
    env: { PATH: process.env.PATH!, DOCKER_HOST: dockerHost },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { code, stdout };
}

async function appContainers(): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${PROJECT}`] } });
}

async function running(): Promise<Dockerode.ContainerInfo> {
  return eventually("one running app container", async () => {
    const all = await appContainers();
    return all.length === 1 && all[0]!.State === "running" ? all[0] : undefined;
  });
}

beforeAll(async () => {
  const d = await ensureDocker();
  // compose looks each named volume up by name, and dockerd then asks every legacy volume driver
  // it has ever talked to, each gone one for ~15 s of retries (earlier test files stopped theirs:
  // 120 s in the full suite). A restart makes the daemon forget them, as test/examples does.
  if (privateDaemonStarted()) await restartDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-up-"));
  await chmod(dir, 0o755);
  projectDir = join(dir, "project");
  secretsDir = join(dir, "secrets");
  tmp = join(dir, "tmp");
  for (const p of [projectDir, secretsDir, tmp]) await mkdir(p);
  // A docker-compose in front of the real one that records what compose is given: argv, its
  // environment and every -f file, read while it runs (the extra file is gone afterwards).
  composeLog = join(dir, "compose-seen.log");
  await mkdir(join(dir, "bin"));
  const real = Bun.which("docker-compose")!;
  await writeFile(
    join(dir, "bin", "docker-compose"),
    `#!/bin/sh\n{ echo "ARGV: $*"; env; prev=; for a in "$@"; do [ "$prev" = -f ] && cat "$a"; prev=$a; done; } >> ${composeLog}\nexec ${real} "$@"\n`,
    { mode: 0o755 },
  );
  await writeFile(join(secretsDir, "db_password"), PLANTED.dbOne);
  await writeFile(join(secretsDir, "api"), JSON.stringify({ token: PLANTED.token, user: "svc" }));
  await writeFile(join(projectDir, "docker-compose.yml"), COMPOSE);
  const config = join(dir, "dso.yaml");
  await writeFile(
    config,
    `providers:\n  file:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${secretsDir}\nagent:\n  metrics: { enabled: true }\n  audit: { enabled: true }\n  volumes_root: ${join(dir, "volumes")}\n  watch:\n    polling_interval: 1s\ndefaults:\n  rotation:\n    enabled: true\n`,
  );
  agent = await startAgent({ dir, config, dockerHost, name: "up" });
  driver = `dso-up-${process.pid}`;
  await mkdir(PLUGIN_DIR, { recursive: true });
  link = join(PLUGIN_DIR, `${driver}.sock`);
  await rm(link, { force: true });
  await Bun.$`ln -s ${agent.socket} ${link}`.quiet();
});

afterAll(async () => {
  if ((await appContainers().catch(() => [])).length > 0) await dso(["down", "-v", "-t", "1"]).catch(() => {});
  await agent?.stop();
  await rm(link, { force: true });
  Bun.spawnSync(["umount", "-l", join(dir, "volumes")]);
  await rm(dir, { recursive: true, force: true });
});

describe("dso up / dso down with docker-compose", () => {
  test("dsofile:// before the entrypoint, dso:// in the variable, rotation, compose keeps the project, no value outside", async () => {
    const before = await readFile(join(projectDir, "docker-compose.yml"), "utf8");
    const up = await dso(["up", "-p", PROJECT, "-d"]);
    expect(up.code, up.stderr).toBe(0);
    // The caveat of env injection, once.
    expect(up.stderr.split("docker inspect").length - 1).toBe(1);

    const first = await running();
    const path = "/run/secrets/dso/db_password";
    await eventually("the entrypoint's first line", async () => {
      const logs = ((await docker.getContainer(first.Id).logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
      return logs.includes(`started with ${PLANTED.dbOne.length} byte file`) ? true : undefined;
    });

    // dso://: the agent re-creates the container with the value in DB_PASSWORD.
    const withEnv = await eventually(
      "DB_PASSWORD set by env injection",
      async () => {
        const c = await running();
        const env = (await docker.getContainer(c.Id).inspect()).Config.Env ?? [];
        return env.includes(`DB_PASSWORD=${PLANTED.dbOne}`) ? { id: c.Id, env } : undefined;
      },
      30_000,
    );
    expect(withEnv.env).toContain(`POSTGRES_PASSWORD_FILE=${path}`);
    expect(withEnv.env).toContain("API_TOKEN_FILE=/run/secrets/dso/token");
    expect(withEnv.env).toContain("PLAIN=untouched");
    expect((await execIn(docker, withEnv.id, ["cat", path])).stdout).toBe(PLANTED.dbOne);
    expect((await execIn(docker, withEnv.id, ["cat", "/run/secrets/dso/token"])).stdout).toBe(PLANTED.token);

    // Rotation: the file and the variable follow the provider.
    await writeFile(join(secretsDir, "db_password"), PLANTED.dbTwo);
    await eventually(
      "rotated file and variable",
      async () => {
        const c = await running();
        const env = (await docker.getContainer(c.Id).inspect()).Config.Env ?? [];
        const file = (await execIn(docker, c.Id, ["cat", path])).stdout;
        return env.includes(`DB_PASSWORD=${PLANTED.dbTwo}`) && file === PLANTED.dbTwo ? true : undefined;
      },
      30_000,
    );

    // compose still owns its service; the user's file is unchanged; the extra file is gone.
    const ps = await plainCompose(["ps", "-q"]);
    expect(ps.code).toBe(0);
    expect(ps.stdout.trim().split("\n").filter(Boolean)).toHaveLength(1);
    expect(await readFile(join(projectDir, "docker-compose.yml"), "utf8")).toBe(before);
    expect(await readdir(tmp)).toEqual([]);
    expect(await readdir(projectDir)).toEqual(["docker-compose.yml"]);
    // What compose was given (argv, environment, every -f file): the extra file was seen (positive
    // control: its volume and the plain variable are in the record), no value is.
    const seen = await readFile(composeLog, "utf8");
    expect(seen).toContain("dso-references.json");
    expect(seen).toContain('"secrets": "api,db_password"');
    expect(seen).toContain("untouched");
    for (const value of Object.values(PLANTED)) {
      expect(seen).not.toContain(value);
      expect(up.stdout + up.stderr).not.toContain(value);
      expect(agent.logs()).not.toContain(value);
    }

    const down = await dso(["down", "-p", PROJECT, "-v", "-t", "1"]);
    expect(down.code, down.stderr).toBe(0);
    expect(await appContainers()).toEqual([]);
    expect((await docker.listVolumes({ filters: { driver: [driver] } })).Volumes ?? []).toEqual([]);
  }, 120_000);

  test("a leftover reference is loud: plain docker-compose up with dso:// is logged, audited, counted and shown by dso ls", async () => {
    // Before issue 22 this ran with DB_PASSWORD=dso://db_password and nothing said anything.
    const up = await plainCompose(["up", "-d"]);
    expect(up.code).toBe(0);
    try {
      const c = await running();
      const line = await agent.waitForLog(/literal dso:\/\/ or dsofile:\/\/ reference/, 20_000);
      expect(line).toContain("DB_PASSWORD=dso://db_password");
      await agent.waitForLog(/"event":"leftover_reference".*"outcome":"LEFTOVER_REFERENCE"/, 5_000);
      const ls = await agent.cli(["ls", "--json"]);
      const row = JSON.parse(ls.stdout).containers.find((x: { id: string }) => x.id === c.Id);
      expect(row?.error).toContain("not brought up with dso up");
      const metrics = await (await fetch("http://agent/metrics", { unix: agent.socket } as RequestInit)).text();
      expect(metrics).toMatch(/^dso_leftover_references 1$/m);
    } finally {
      await plainCompose(["down", "-t", "1"]);
    }
  }, 60_000);

  test("the Go DSO's documented mixed example (docs/docker-compose.md), only the image changed, in its own directory", async () => {
    const mixedDir = join(dir, "mixed");
    await mkdir(mixedDir);
    await mkdir(join(secretsDir, "global"), { recursive: true });
    await writeFile(join(secretsDir, "global", "db_pass"), PLANTED.dbOne);
    await writeFile(join(secretsDir, "global", "redis_url"), PLANTED.token);
    await writeFile(
      join(mixedDir, "docker-compose.yaml"),
      ["services:", "  mixed_app:", `    image: ${BUSYBOX_IMAGE}`, "    environment:", "      - DATABASE_PASSWORD_FILE=dsofile://global/db_pass", "      - REDIS_URL=dso://global/redis_url", "      - DEBUG=true", ""].join("\n"),
    );
    const run = (args: string[]) =>
      Bun.spawn([DSO, ...args], {
        cwd: mixedDir,
        env: { PATH: process.env.PATH!, DOCKER_HOST: dockerHost, DSO_VOLUME_DRIVER: driver, TMPDIR: tmp },
        stdout: "pipe",
        stderr: "pipe",
        stdin: "ignore",
      });
    const up = run(["up", "-d"]);
    const [upErr, upCode] = [await new Response(up.stderr).text(), await up.exited];
    expect(upCode, upErr).toBe(0);
    try {
      const env = await eventually(
        "REDIS_URL injected",
        async () => {
          // The re-creation is over only when the old container is gone: one container, running, with the variable
          // (`dso down` while the agent still swaps them races it for the containers and the volume).
          const all = await docker.listContainers({ all: true, filters: { label: ["com.docker.compose.service=mixed_app"] } });
          const [c] = all;
          if (all.length !== 1 || c!.State !== "running") return undefined;
          const e = (await docker.getContainer(c!.Id).inspect()).Config.Env ?? [];
          return e.includes(`REDIS_URL=${PLANTED.token}`) ? { id: c!.Id, env: e } : undefined;
        },
        30_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${agent.logs().split("\n").filter((l) => /mixed|error|warn/i.test(l)).slice(-15).join("\n")}`);
      });
      expect(env.env).toContain("DATABASE_PASSWORD_FILE=/run/secrets/dso/db_pass");
      expect(env.env).toContain("DEBUG=true");
      expect((await execIn(docker, env.id, ["cat", "/run/secrets/dso/db_pass"])).stdout).toBe(PLANTED.dbOne);
    } finally {
      const down = run(["down", "-v", "-t", "1"]);
      const [downErr, downCode] = [await new Response(down.stderr).text(), await down.exited];
      expect(downCode, downErr).toBe(0);
    }
  }, 60_000);
});
