/**
 * End to end: the compiled `dso agent` with the file provider against the private test daemon.
 * Secrets are planted with known values; every agent log and CLI output is scanned for them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const PLANTED = [
  "e2e-planted-ALPHA-7Hq2",
  "e2e-planted-BRAVO-9Xw4",
  "e2e-planted-CHARLIE-3Kp8",
  "e2e-planted-DELTA-5Rt1",
  "e2e-planted-ENVONE-1Qa9",
  "e2e-planted-ENVTWO-6Zs3",
];
/**
 * What a guesser would hash: every content the secret files get in this file (plain values, and
 * api.json's JSON). The first 12 hex digits of its SHA-256 cover every longer prefix too.
 */
const GUESSABLE = [...PLANTED, ...[PLANTED[1], PLANTED[3]].map((key) => JSON.stringify({ key, region: "eu" }))].map((content) =>
  new Bun.CryptoHasher("sha256").update(content).digest("hex").slice(0, 12),
);
const IDLE = 'trap "exit 0" TERM; trap "echo got-hup" HUP; while true; do sleep 0.1; done';

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let secretsDir: string;
let configPath: string;
let agent: AgentProcess;
const agents: AgentProcess[] = [];
const containers: string[] = [];
const cliOutputs: string[] = [];

async function runContainer(name: string, labels: Record<string, string>, extra: Partial<Dockerode.ContainerCreateOptions> = {}) {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", IDLE],
    Labels: labels,
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    ...extra,
  });
  containers.push(c.id);
  await c.start();
  return c;
}

async function fileIn(id: string, path: string): Promise<string | undefined> {
  const r = await execIn(docker, id, ["cat", path]);
  return r.code === 0 ? r.stdout : undefined;
}

async function cli(args: string[], env?: Record<string, string>) {
  const r = await agent.cli(args, env);
  cliOutputs.push(r.stdout, r.stderr);
  return r;
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-e2e-"));
  await chmod(dir, 0o755);
  secretsDir = join(dir, "secrets");
  await mkdir(secretsDir);
  await writeFile(join(secretsDir, "db_password"), PLANTED[0]!);
  await writeFile(join(secretsDir, "api.json"), JSON.stringify({ key: PLANTED[1], region: "eu" }));
  await writeFile(join(secretsDir, "legacy_token"), PLANTED[4]!);
  configPath = join(dir, "dso.yaml");
  await writeFile(
    configPath,
    [
      "providers:",
      "  local:",
      "    type: file",
      "    allow_undeclared: true",
      "    config:",
      `      path: ${secretsDir}`,
      "agent:",
      "  watch:",
      "    polling_interval: 1s",
      "secrets:",
      "  - name: api",
      "    provider: local",
      "    mappings: { key: api_key }",
      "    rotation: { enabled: true, strategy: signal }",
      "  - name: legacy_token",
      "    provider: local",
      "    inject: env",
      "    mappings: { value: LEGACY_TOKEN }",
      "",
    ].join("\n"),
  );
  agent = await startAgent({ dir, config: configPath, dockerHost });
  agents.push(agent);
});

afterAll(async () => {
  for (const a of agents) await a.stop("SIGKILL");
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe("dso agent end to end (file provider, compiled binary)", () => {
  test("a labelled container gets its secret on tmpfs, and a change reaches it", async () => {
    const c = await runContainer("e2e-none", { "dso.reloader": "true", "dso.secrets": "db_password", "dso.update.strategy": "none" });
    expect(await eventually("first delivery", () => fileIn(c.id, "/run/secrets/db_password"))).toBe(PLANTED[0]!);
    // Docker records the empty mount point itself; nothing beneath it may be in the writable layer.
    const changes = await c.changes();
    expect((changes ?? []).filter((ch: { Path: string }) => ch.Path.startsWith("/run/secrets/"))).toEqual([]);

    await writeFile(join(secretsDir, "db_password"), PLANTED[2]!);
    await eventually("rotated value", async () => ((await fileIn(c.id, "/run/secrets/db_password")) === PLANTED[2] ? true : undefined));
    const info = await c.inspect();
    expect(info.State.Running).toBe(true);
  });

  test("a container started after the change gets the new value", async () => {
    const late = await runContainer("e2e-late", { "dso.reloader": "true", "dso.secrets": "db_password" });
    expect(await eventually("late delivery", () => fileIn(late.id, "/run/secrets/db_password"))).toBe(PLANTED[2]!);
  });

  test("signal strategy: new file, then SIGHUP to the container", async () => {
    const s = await runContainer("e2e-sig", { "dso.reloader": "true", "dso.secrets": "api", "dso.update.strategy": "signal" });
    expect(await eventually("api delivery", () => fileIn(s.id, "/run/secrets/api_key"))).toBe(PLANTED[1]!);
    await writeFile(join(secretsDir, "api.json"), JSON.stringify({ key: PLANTED[3], region: "eu" }));
    await eventually("rotated api key", async () => ((await fileIn(s.id, "/run/secrets/api_key")) === PLANTED[3] ? true : undefined));
    const logs = await eventually("SIGHUP in container", async () => {
      const out = ((await s.logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
      return out.includes("got-hup") ? out : undefined;
    });
    expect(logs).toContain("got-hup");
  });

  test("restart strategy restarts on change and the files are back after the restart", async () => {
    const c = await runContainer("e2e-restart", { "dso.reloader": "true", "dso.secrets": "db_password", "dso.update.strategy": "restart" });
    expect(await eventually("delivery", () => fileIn(c.id, "/run/secrets/db_password"))).toBe(PLANTED[2]!);
    const before = (await c.inspect()).State.StartedAt;
    await writeFile(join(secretsDir, "db_password"), PLANTED[0]!);
    await eventually("restart", async () => ((await c.inspect()).State.StartedAt !== before ? true : undefined));
    expect(await eventually("file after restart", async () => ((await fileIn(c.id, "/run/secrets/db_password")) === PLANTED[0] ? true : undefined))).toBe(true);
  });

  test("env injection: the container is re-created with the variable, and again when it changes", async () => {
    const name = `e2e-env-${process.pid}`;
    const c = await runContainer("e2e-env", { "dso.reloader": "true", "dso.secrets": "legacy_token" });
    const envOf = async () => {
      const info = await docker.getContainer(name).inspect();
      return info.State.Running ? { id: info.Id, env: info.Config.Env ?? [] } : undefined;
    };
    const first = await eventually("re-created with LEGACY_TOKEN", async () => {
      const now = await envOf();
      return now && now.id !== c.id && now.env.includes(`LEGACY_TOKEN=${PLANTED[4]}`) ? now : undefined;
    });
    containers.push(first.id);
    await expect(docker.getContainer(c.id).inspect()).rejects.toThrow();
    await writeFile(join(secretsDir, "legacy_token"), PLANTED[5]!);
    const second = await eventually("re-created with the new value", async () => {
      const now = await envOf();
      return now && now.id !== first.id && now.env.includes(`LEGACY_TOKEN=${PLANTED[5]}`) ? now : undefined;
    });
    containers.push(second.id);
    expect(second.env.filter((e) => e.startsWith("LEGACY_TOKEN="))).toHaveLength(1);
  });

  test("status, ls and plan describe secrets and containers without values", async () => {
    const status = await cli(["status", "--json"]);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout);
    expect(parsed.providers[0]).toMatchObject({ name: "local", type: "file", healthy: true });
    expect(parsed.secrets.map((s: { name: string }) => s.name)).toContain("db_password");
    const ls = await cli(["ls", "--json"]);
    const listed = JSON.parse(ls.stdout).containers as Array<{ name: string; deliveries: Array<{ mode: string; path: string }> }>;
    const none = listed.find((c) => c.name === `e2e-none-${process.pid}`);
    expect(none?.deliveries).toEqual([expect.objectContaining({ mode: "procfs", path: "/run/secrets" })]);
    const plan = await cli(["plan", "db_password"]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain(`e2e-restart-${process.pid}`);
    expect(plan.stdout.replace(/\s+/g, " ")).toContain("then restart");
    const table = await cli(["ls"]);
    expect(table.stdout).toContain("CONTAINER");
    // Nothing a guess of the value could be checked against: no bare hash of it, whole or cut,
    // in status, ls, or the layout in the container (version directory names, version marker).
    const layout = await execIn(docker, `e2e-none-${process.pid}`, ["sh", "-c", "ls -la /run/secrets /run/secrets/..data/"]);
    expect(layout.stdout).toContain("..dso_version -> dso1:");
    for (const out of [status.stdout, ls.stdout, table.stdout, layout.stdout]) for (const guess of GUESSABLE) expect(out).not.toContain(guess);
  });

  test("the agent and its provider process write no core file and are not dumpable", async () => {
    const status = JSON.parse((await cli(["status", "--json"])).stdout) as { agent: { pid: number; hardening?: { dumpable: boolean; coreDumps: boolean } }; providers: Array<{ pid?: number }> };
    expect(status.agent.hardening).toEqual({ dumpable: false, coreDumps: false });
    const coreLimit = (pid: number) => readFileSync(`/proc/${pid}/limits`, "utf8").split("\n").find((l) => l.startsWith("Max core file size"))?.replace(/\s+/g, " ");
    expect(coreLimit(status.agent.pid)).toBe("Max core file size 0 0 bytes ");
    const providerPid = status.providers.find((p) => p.pid)?.pid;
    expect(providerPid).toBeDefined();
    expect(coreLimit(providerPid!)).toBe("Max core file size 0 0 bytes ");
  });

  test("bad labels: a warning naming container and label, the agent keeps running", async () => {
    await runContainer("e2e-badlabel", { "dso.reloader": "true", "dso.secrets": "db_password", "dso.update.strategy": "explode" });
    await agent.waitForLog(/e2e-badlabel.*dso\.update\.strategy/);
    expect((await cli(["status"])).code).toBe(0);
  });

  test("dso.* labels baked into an image do not give its containers secrets", async () => {
    const base = await runContainer("e2e-imgsrc", {});
    const image = `dso-test/labelled-${process.pid}:1`;
    await base.commit({ repo: image.split(":")[0], tag: "1", changes: ["LABEL dso.reloader=true", "LABEL dso.secrets=db_password"] } as never);
    const c = await docker.createContainer({
      name: `e2e-imglabels-${process.pid}`,
      Image: image,
      Cmd: ["sh", "-c", IDLE],
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    containers.push(c.id);
    await c.start();
    await agent.waitForLog(/e2e-imglabels.*ignoring dso\.reloader, dso\.secrets set by its image/);
    await Bun.sleep(1500);
    expect(await fileIn(c.id, "/run/secrets/db_password")).toBeUndefined();
  });

  test("bad API requests get 4xx JSON errors naming the field", async () => {
    const post = (path: string, body: string) =>
      fetch(`http://dso${path}`, { unix: agent.socket, method: "POST", body, headers: { "content-type": "application/json" } } as RequestInit);
    const notJson = await post("/v1/rotate", "{nope");
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { message: string } }).error.message).toContain("not valid JSON");
    const wrongField = await post("/v1/rotate", JSON.stringify({ secret: 42 }));
    expect(wrongField.status).toBe(400);
    expect(((await wrongField.json()) as { error: { message: string } }).error.message).toContain("secret");
    const extra = await post("/v1/sync", JSON.stringify({ container: "x", evil: true }));
    expect(extra.status).toBe(400);
    const unknown = await fetch("http://dso/v1/nothing", { unix: agent.socket } as RequestInit);
    expect(unknown.status).toBe(404);
    expect((await cli(["status"])).code).toBe(0);
  });

  test("the socket is 0600 and another user cannot talk to the agent", async () => {
    const mode = (await stat(agent.socket)).mode & 0o777;
    expect(mode).toBe(0o600);
    // A copy nobody can execute: the checkout itself may sit under a 0700 directory (mktemp -d).
    const open = await mkdtemp(join(tmpdir(), "dso-e2e-nobody-"));
    try {
      const binary = join(open, "dso");
      await copyFile(join(import.meta.dir, "../../dist/dso"), binary);
      await chmod(open, 0o755);
      await chmod(binary, 0o755);
      const asNobody = Bun.spawnSync([binary, "status", "--socket", agent.socket], { uid: 65534, gid: 65534, env: { PATH: process.env.PATH! } });
      expect(asNobody.exitCode).toBe(1);
      expect(asNobody.stderr.toString()).toContain("cannot reach the DSO agent");
    } finally {
      await rm(open, { recursive: true, force: true });
    }
  });

  test("agent killed and restarted: no spurious restarts, files stay", async () => {
    const c = await runContainer("e2e-survive", { "dso.reloader": "true", "dso.secrets": "db_password", "dso.update.strategy": "restart" });
    await eventually("delivery", () => fileIn(c.id, "/run/secrets/db_password"));
    const started = (await c.inspect()).State.StartedAt;
    await agent.stop("SIGKILL");
    expect(await fileIn(c.id, "/run/secrets/db_password")).toBe(PLANTED[0]!);
    agent = await startAgent({ dir, config: configPath, dockerHost, name: "agent2" });
    agents.push(agent);
    // The new agent reads the version back from the container: current, so nothing is delivered.
    const listed = await eventually("the restarted agent lists the container as current", async () => {
      const ls = JSON.parse((await cli(["ls", "--json"])).stdout || "{}") as { containers?: Array<{ name: string; status: Array<{ state: string }> }> };
      const mine = ls.containers?.find((x) => x.name === `e2e-survive-${process.pid}`);
      return mine?.status.length && mine.status.every((s) => s.state === "current") ? mine : undefined;
    });
    expect(listed.status[0]).toMatchObject({ state: "current" });
    await Bun.sleep(2500); // two polls
    expect((await c.inspect()).State.StartedAt).toBe(started);
    expect(await fileIn(c.id, "/run/secrets/db_password")).toBe(PLANTED[0]!);
    expect(agent.logs()).not.toMatch(/delivered secrets to container.*e2e-survive/);
  });

  test("dso inject delivers a named secret to an unlabelled container through the agent, printing no value", async () => {
    const c = await runContainer("e2e-inject", {});
    const run = await cli(["inject", c.id, "--secret", "db_password"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("via agent");
    expect(run.stdout).toMatch(/db_password\s+\S+\s+yes/);
    // Root on the host sees /proc/<pid>/root: no process is started inside the container.
    expect(run.stdout).toContain("(mode procfs)");
    expect(await fileIn(c.id, "/run/secrets/db_password")).toBe(PLANTED[0]!);
  });

  test("dso inject without an agent delivers directly; an unknown container is a clear error", async () => {
    const c = await runContainer("e2e-inject-direct", {});
    const binary = join(import.meta.dir, "../../dist/dso");
    const env = { PATH: process.env.PATH!, DOCKER_HOST: dockerHost };
    const direct = Bun.spawnSync([binary, "inject", c.id, "--secret", "api", "--config", configPath, "--socket", join(dir, "none.sock")], { env });
    cliOutputs.push(direct.stdout.toString(), direct.stderr.toString());
    expect(direct.exitCode).toBe(0);
    expect(direct.stdout.toString()).toContain("via direct");
    expect(await fileIn(c.id, "/run/secrets/api_key")).toBe(PLANTED[3]!);
    const missing = Bun.spawnSync([binary, "inject", "no-such-container", "--config", configPath, "--socket", join(dir, "none.sock")], { env });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.toString()).toContain("no such container: no-such-container");
  });

  test("SIGHUP with an invalid config keeps the running one; SIGTERM exits 0", async () => {
    const good = await Bun.file(configPath).text();
    await writeFile(configPath, "providers:\n  local:\n    type: nonsense\n");
    agent.proc.kill("SIGHUP");
    await agent.waitForLog(/configuration reload failed; keeping the running configuration/);
    expect((await cli(["status"])).code).toBe(0);
    await writeFile(configPath, good);
    expect(await agent.stop("SIGTERM")).toBe(0);
  });

  test("no planted secret value appears in any agent log or CLI output", () => {
    const everything = agents.map((a) => a.logs()).join("\n") + cliOutputs.join("\n");
    expect(everything.length).toBeGreaterThan(1000);
    for (const value of PLANTED) expect(everything).not.toContain(value);
    // Nor a bare hash of one (the agent logs at debug level here).
    for (const guess of GUESSABLE) expect(everything).not.toContain(guess);
  });
});
