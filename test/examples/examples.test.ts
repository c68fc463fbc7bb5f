/**
 * The compose files in examples/ are brought up with Debian's docker-compose (v1) against the test
 * daemon, with the compiled agent reading the example's own dso.yaml, so the examples cannot rot:
 * each test asserts the secrets arrive and rotate. The README quickstart is checked to be a
 * verbatim copy of examples/quickstart. Variables the examples read (image, network, secrets
 * directory, polling interval, volume driver name) are the only things the test changes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer } from "../support/aws-server.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker, privateDaemonStarted, restartDocker } from "../support/docker-daemon.ts";
import { REPO_ROOT } from "../support/dso-binary.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";
import { startVaultServer } from "../support/vault-server.ts";

const EXAMPLES = join(REPO_ROOT, "examples");
const PLUGIN_DIR = "/run/docker/plugins";
const EXAMPLE_DRIVER_PREFIX = "dso-example-";
const PLANTED = {
  quickOne: "example-planted-quick-ONE-4k2",
  quickTwo: "example-planted-quick-TWO-8w1",
  apiOne: "example-planted-api-ONE-3j7",
  apiTwo: "example-planted-api-TWO-6p0",
  dbPassword: "example-planted-db-5h9",
  sessionOne: "example-planted-session-ONE-2m4",
  sessionTwo: "example-planted-session-TWO-9q3",
  vaultOne: "example-planted-vault-ONE-1z8",
  vaultTwo: "example-planted-vault-TWO-7y6",
  awsOne: "example-planted-aws-ONE-0x5",
  awsTwo: "example-planted-aws-TWO-4v2",
};

let docker: Dockerode;
let dockerHost: string;
let dir: string;
let secretsDir: string;
const agents: AgentProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** docker-compose -p <project> -f examples/<name>/docker-compose.yml <args>, against the test daemon. */
async function compose(example: string, project: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const proc = Bun.spawn(["docker-compose", "-p", project, "-f", join(EXAMPLES, example, "docker-compose.yml"), "--no-ansi", ...args], {
    cwd: join(EXAMPLES, example),
    env: { PATH: process.env.PATH!, DOCKER_HOST: dockerHost, DSO_EXAMPLE_IMAGE: BUSYBOX_IMAGE, DSO_EXAMPLE_NETWORK: "none", ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function up(example: string, project: string, env: Record<string, string> = {}): Promise<void> {
  const run = await compose(example, project, ["up", "-d"], env);
  if (run.code !== 0) throw new Error(`docker-compose up failed (${run.code}):\n${run.stdout}\n${run.stderr}`);
}

/**
 * For a test's finally, while its agent still runs: `down -v` only when something of the
 * project is left (a DSO volume whose driver is gone costs dockerd ~15 s per lookup).
 */
async function downIfLeft(example: string, project: string, env: Record<string, string> = {}): Promise<void> {
  const volumes = await projectVolumes(project, env.DSO_VOLUME_DRIVER ?? "local");
  if ((await projectContainers(project)).length === 0 && volumes.length === 0) return;
  await compose(example, project, ["down", "-v", "--timeout", "1"], env);
}

/**
 * The project's volumes of one driver. dockerd keeps every legacy volume driver it has talked to
 * and asks each of them on an unfiltered volume list, retrying one that is gone for ~15 s, so the
 * list names the driver (an earlier example's agent has stopped by then).
 */
async function projectVolumes(project: string, driver: string): Promise<unknown[]> {
  return (await docker.listVolumes({ filters: { label: [`com.docker.compose.project=${project}`], driver: [driver] } })).Volumes ?? [];
}

/** Every container compose created for `project`, running or not. */
async function projectContainers(project: string): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${project}`] } });
}

async function serviceContainer(project: string, service: string): Promise<Dockerode.ContainerInfo> {
  const found = (await projectContainers(project)).filter((c) => c.Labels["com.docker.compose.service"] === service);
  if (found.length !== 1) throw new Error(`expected one ${service} container, found ${found.length}: ${found.map((c) => c.Names.join(",")).join(" ")}`);
  return found[0]!;
}

async function fileIn(id: string, path: string): Promise<string | undefined> {
  const r = await execIn(docker, id, ["cat", path]);
  return r.code === 0 ? r.stdout : undefined;
}

async function waitForFile(project: string, service: string, path: string, want: string, timeoutMs = 30_000): Promise<string> {
  return eventually(
    `${path} = ${want.slice(0, 20)}… in ${project}/${service}`,
    async () => {
      const c = await serviceContainer(project, service);
      return (await fileIn(c.Id, path)) === want ? c.Id : undefined;
    },
    timeoutMs,
  );
}

async function agentFor(example: string, env: Record<string, string> = {}): Promise<AgentProcess> {
  const agent = await startAgent({
    dir,
    config: join(EXAMPLES, example, "dso.yaml"),
    dockerHost,
    name: `example-${example}`,
    env: { DSO_SECRETS_DIR: secretsDir, DSO_POLLING_INTERVAL: "1s", ...env },
  });
  agents.push(agent);
  return agent;
}

async function logsOf(id: string): Promise<string> {
  return ((await docker.getContainer(id).logs({ stdout: true, stderr: true })) as unknown as Buffer).toString("latin1");
}

/** Nothing the agent logged holds a planted value. */
function expectNoPlantedValues(agent: AgentProcess): void {
  const logs = agent.logs();
  for (const value of Object.values(PLANTED)) expect(logs).not.toContain(value);
}

/**
 * A dangling driver socket in /run/docker/plugins makes dockerd retry it for ~30 s on every
 * volume lookup, so links this test left behind when a run was killed are removed first.
 */
function removeDanglingExampleDrivers(): void {
  for (const name of existsSync(PLUGIN_DIR) ? readdirSync(PLUGIN_DIR) : []) {
    if (!name.startsWith(EXAMPLE_DRIVER_PREFIX)) continue;
    const link = join(PLUGIN_DIR, name);
    if (!existsSync(link)) rmSync(link, { force: true });
  }
}

beforeAll(async () => {
  removeDanglingExampleDrivers();
  const d = await ensureDocker();
  // compose looks a named volume up by name, and dockerd then asks every legacy volume driver it
  // has ever talked to, each gone one for ~15 s of retries: earlier test files stopped theirs.
  // A restart makes the daemon forget them (nothing of those files runs any more).
  if (privateDaemonStarted()) await restartDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-examples-"));
  await chmod(dir, 0o755);
  secretsDir = join(dir, "secrets");
  await mkdir(secretsDir);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  for (const agent of agents) await agent.stop();
  if (!process.env.DSO_KEEP_EXAMPLE_LOGS) await rm(dir, { recursive: true, force: true });
});

describe("examples/ brought up with docker-compose", () => {
  test("the README quickstart is examples/quickstart, copied verbatim", async () => {
    const readme = await readFile(join(REPO_ROOT, "README.md"), "utf8");
    for (const file of ["docker-compose.yml", "dso.yaml"]) {
      const text = await readFile(join(EXAMPLES, "quickstart", file), "utf8");
      expect(readme).toContain(`\`\`\`yaml\n${text}\`\`\``);
    }
  });

  test("quickstart: file provider, --tmpfs service with labels: the secret arrives and rotates with a signal", async () => {
    await writeFile(join(secretsDir, "db_password"), PLANTED.quickOne);
    const agent = await agentFor("quickstart");
    try {
      await up("quickstart", "exquick");
      const id = await waitForFile("exquick", "app", "/run/secrets/db_password", PLANTED.quickOne);
      await writeFile(join(secretsDir, "db_password"), PLANTED.quickTwo);
      expect(await waitForFile("exquick", "app", "/run/secrets/db_password", PLANTED.quickTwo)).toBe(id);
      await eventually("the app's SIGHUP handler", async () => ((await logsOf(id)).includes(`reloaded: ${PLANTED.quickTwo.length} bytes`) ? true : undefined));
      expect((await compose("quickstart", "exquick", ["down", "--timeout", "1"])).code).toBe(0);
      expect(await projectContainers("exquick")).toEqual([]);
      expectNoPlantedValues(agent);
    } finally {
      await downIfLeft("quickstart", "exquick");
      await agent.stop();
    }
  });

  test("dso-volume: the secret is in the volume before the entrypoint runs, and rotates", async () => {
    const driver = `${EXAMPLE_DRIVER_PREFIX}${process.pid}`;
    await writeFile(join(secretsDir, "api_key"), PLANTED.apiOne);
    await writeFile(join(secretsDir, "db_password"), PLANTED.dbPassword);
    const volumesRoot = join(dir, "volumes");
    const agent = await agentFor("dso-volume", { DSO_VOLUMES_ROOT: volumesRoot });
    await mkdir(PLUGIN_DIR, { recursive: true });
    const link = join(PLUGIN_DIR, `${driver}.sock`);
    await rm(link, { force: true });
    await Bun.$`ln -s ${agent.socket} ${link}`.quiet();
    // Also when a timeout ends the test before its finally: never leave a dangling driver.
    cleanups.push(() => rm(link, { force: true }));
    const env = { DSO_VOLUME_DRIVER: driver };
    try {
      await up("dso-volume", "exvol", env);
      const api = await serviceContainer("exvol", "api");
      // The entrypoint printed the size of the file it read at once: it existed before it started.
      await eventually("the entrypoint's first line", async () => ((await logsOf(api.Id)).includes(`started with ${PLANTED.apiOne.length} byte api_key`) ? true : undefined));
      expect(await fileIn(api.Id, "/run/secrets/db_password")).toBe(PLANTED.dbPassword);
      await writeFile(join(secretsDir, "api_key"), PLANTED.apiTwo);
      expect(await waitForFile("exvol", "api", "/run/secrets/api_key", PLANTED.apiTwo)).toBe(api.Id);
      const down = await compose("dso-volume", "exvol", ["down", "-v", "--timeout", "1"], env);
      expect(down.code).toBe(0);
      expect(await projectContainers("exvol")).toEqual([]);
      expect(await projectVolumes("exvol", driver)).toEqual([]);
      expectNoPlantedValues(agent);
    } finally {
      await downIfLeft("dso-volume", "exvol", env);
      await agent.stop();
      await rm(link, { force: true });
      Bun.spawnSync(["umount", "-l", volumesRoot]);
    }
  }, 120_000);

  test("rolling-web: after a rolling rotation compose still owns exactly one container; up -d keeps it; down removes everything", async () => {
    await writeFile(join(secretsDir, "session_key"), PLANTED.sessionOne);
    const agent = await agentFor("rolling-web");
    try {
      await up("rolling-web", "exroll");
      const before = await waitForFile("exroll", "web", "/run/secrets/session_key", PLANTED.sessionOne);
      await eventually("web healthy", async () => ((await docker.getContainer(before).inspect()).State.Health?.Status === "healthy" ? true : undefined), 30_000);
      await writeFile(join(secretsDir, "session_key"), PLANTED.sessionTwo);
      // A replacement started with the new secret, became healthy and took over; the old one is gone.
      // What the replacement's healthcheck said, for the failure message (the reloader's side).
      const seen = new Map<string, string>();
      const after = await eventually(
        "the rolling replacement to take over",
        async () => {
          const all = await projectContainers("exroll");
          for (const c of all.filter((c) => c.Id !== before)) {
            const state = (await docker.getContainer(c.Id).inspect().catch(() => undefined))?.State;
            if (!state?.Running) continue;
            const probe = "ls -la /run/secrets; grep secrets /proc/mounts; test -s /run/secrets/session_key && echo readable; wget -q -O - http://127.0.0.1:8080/";
            const inside = await execIn(docker, c.Id, ["sh", "-c", `(${probe}) 2>&1`]).catch((e: Error) => ({ code: -1, stdout: `exec failed: ${e.message}`, stderr: "" }));
            seen.set(c.Names[0]!, `${state.Status}/${state.Health?.Status ?? "-"}: ${JSON.stringify(state.Health?.Log?.slice(-2) ?? [])}\n  inside (exit ${inside.code}): ${JSON.stringify(inside.stdout + inside.stderr)}`);
          }
          if (all.length !== 1 || all[0]!.Id === before) return undefined;
          return (await fileIn(all[0]!.Id, "/run/secrets/session_key")) === PLANTED.sessionTwo ? all[0]! : undefined;
        },
        90_000,
      ).catch((error: Error) => {
        const replacements = [...seen].map(([name, health]) => `${name} ${health}`).join("\n");
        const reloader = agent.logs().split("\n").filter((l) => l.includes('"tag":"reconciler"') && !l.includes('"level":"debug"')).join("\n");
        throw new Error(`${error.message}\nreplacements seen:\n${replacements}\nreloader log:\n${reloader}`);
      });
      expect(after.Labels["com.docker.compose.service"]).toBe("web");
      expect(after.Names).toEqual(["/exroll_web_1"]);
      const ps = await compose("rolling-web", "exroll", ["ps", "-q"]);
      expect(ps.stdout.trim().split("\n")).toEqual([after.Id]);
      const again = await compose("rolling-web", "exroll", ["up", "-d"]);
      expect(again.code).toBe(0);
      expect(`${again.stdout}${again.stderr}`).toContain("exroll_web_1 is up-to-date");
      expect((await projectContainers("exroll")).map((c) => c.Id)).toEqual([after.Id]);
      // The service exits on SIGTERM: a rotation or `down` does not wait for the 10 s SIGKILL.
      const stopping = performance.now();
      await docker.getContainer(after.Id).stop({ t: 10 });
      expect(performance.now() - stopping).toBeLessThan(3_000);
      expect((await compose("rolling-web", "exroll", ["down", "--timeout", "1"])).code).toBe(0);
      expect(await projectContainers("exroll")).toEqual([]);
      expectNoPlantedValues(agent);
    } finally {
      await downIfLeft("rolling-web", "exroll");
      await agent.stop();
    }
  }, 150_000);

  test("vault: keys of a KV v2 secret arrive as the mapped files and rotate on a new version", async () => {
    const vault = await startVaultServer();
    cleanups.push(() => vault.stop());
    vault.state.writeSecret("secret/app/db", { username: "app", password: PLANTED.vaultOne });
    const agent = await agentFor("vault", { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.state.rootToken });
    try {
      await up("vault", "exvault");
      const id = await waitForFile("exvault", "app", "/run/secrets/db_password", PLANTED.vaultOne);
      expect(await fileIn(id, "/run/secrets/db_user")).toBe("app");
      vault.state.writeSecret("secret/app/db", { username: "app", password: PLANTED.vaultTwo });
      expect(await waitForFile("exvault", "app", "/run/secrets/db_password", PLANTED.vaultTwo)).toBe(id);
      expect((await compose("vault", "exvault", ["down", "--timeout", "1"])).code).toBe(0);
      expectNoPlantedValues(agent);
    } finally {
      await downIfLeft("vault", "exvault");
      await agent.stop();
    }
  });

  test("aws: a JSON secret's key arrives as the mapped file and rotates on a new version", async () => {
    const aws = await startAwsServer();
    cleanups.push(() => aws.stop());
    aws.state.putSecret("prod/api", JSON.stringify({ token: PLANTED.awsOne }));
    const agent = await agentFor("aws", {
      AWS_ENDPOINT_URL: aws.url,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: "example-test-secret-key",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    try {
      await up("aws", "exaws");
      const id = await waitForFile("exaws", "app", "/run/secrets/api_token", PLANTED.awsOne);
      aws.state.putSecret("prod/api", JSON.stringify({ token: PLANTED.awsTwo }));
      expect(await waitForFile("exaws", "app", "/run/secrets/api_token", PLANTED.awsTwo)).toBe(id);
      expect((await compose("aws", "exaws", ["down", "--timeout", "1"])).code).toBe(0);
      expectNoPlantedValues(agent);
    } finally {
      await downIfLeft("aws", "exaws");
      await agent.stop();
    }
  });
});
