/**
 * Issue 20's matrix: the same templates (a DSN from two keys, a `.env` format file) reach every
 * delivery path of one compiled agent — labelled containers in procfs and volume mode, a DSO
 * volume (plugin mode), env injection (a rendered variable) and `dso inject` — then a change of
 * the source re-renders everywhere, a change of the template text (SIGHUP reload) re-renders, and
 * a template with a missing key writes no file and logs file:line and the key, never a value.
 * Last, the memory scan: 0 copies of the two planted values and 0 of the rendered DSN in the agent
 * after the window, with positive controls (the secret's name is found; enough bytes scanned).
 * One agent for all of it (suite-time budget), and last a second one in its own PID namespace
 * (it cannot see containers' processes, so a --tmpfs target of an image with tar gets exec mode)
 * for the same template in exec mode.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { dsoBinary } from "../support/dso-binary.ts";
import { dsoProcesses, scanProcessMemory } from "../support/memory-scan.ts";
import { BUSYBOX_IMAGE, ensureTestImages, NOTAR_IMAGE } from "../support/test-images.ts";

const hex = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
const RUN = `${process.pid}`;
const DRIVER = `dsotpl-${RUN}`;
const PLUGIN_DIR = "/run/docker/plugins";
const TARGET = "/run/secrets";
const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
// Values never occur inside a name or log text (the log redactor masks substrings).
const USER = `tpluser${hex(8)}`;
const PASS1 = `tplpass1-${hex(12)}`;
const PASS2 = `tplpass2/${hex(12)}`;
const ENV_USER = `tplenvuser${hex(8)}`;
const ENV_PASS1 = `tplenv1-${hex(12)}`;
const ENV_PASS2 = `tplenv2-${hex(12)}`;
const dsn = (scheme: string, user: string, pass: string) => `${scheme}://${user}:${encodeURIComponent(pass).replace(/%20/g, "+")}@db/app`;

let docker: Dockerode;
let dir: string;
let agent: AgentProcess;
let execAgent: AgentProcess | undefined;
let dockerHost: string;
let configPath: string;
const containers: string[] = [];
const volumes: string[] = [];

function config(scheme: string): string {
  const tpl = `"${scheme}://{{ .user }}:{{ .password | urlquery }}@db/app"`;
  return `providers:
  local:
    type: file
    config:
      path: ${join(dir, "secrets")}
agent:
  volumes_root: ${join(dir, "volumes")}
  watch:
    polling_interval: 1h
secrets:
  - name: tpldb
    targets: { labels: { tpl_files: "${RUN}" }, volumes: [tplvol-${RUN}] }
    rotation: { enabled: true, strategy: none }
    templates:
      - file: dsn
        mode: 0440
        template: ${tpl}
      - file: app.env
        format: env
  - name: tplenv
    inject: env
    targets: { labels: { tpl_env: "${RUN}" } }
    templates:
      - env: DATABASE_URL
        template: ${tpl}
  - name: tplbroken
    targets: { labels: { tpl_broken: "${RUN}" } }
    templates:
      - file: out
        template: |
          first line
          {{ .user }}:{{ .port }}
`;
}

async function setSecret(name: string, value: Record<string, string>): Promise<void> {
  const file = join(dir, "secrets", `${name}.json`);
  await writeFile(`${file}.tmp`, JSON.stringify(value));
  await Bun.$`mv ${`${file}.tmp`} ${file}`.quiet();
}

async function run(name: string, labels: Record<string, string>, host: Dockerode.HostConfig, image = BUSYBOX_IMAGE): Promise<void> {
  const full = `${name}-${RUN}`;
  containers.push(full);
  const c = await docker.createContainer({ name: full, Image: image, Cmd: ["sh", "-c", IDLE], Labels: labels, HostConfig: { NetworkMode: "none", ...host } });
  await c.start();
}

const cat = async (container: string, file: string) => {
  const r = await execIn(docker, `${container}-${RUN}`, ["cat", `${TARGET}/${file}`]);
  return r.code === 0 ? r.stdout : undefined;
};
const envOf = async (container: string) => {
  const info = await docker.getContainer(`${container}-${RUN}`).inspect();
  return info.State.Running ? (info.Config.Env ?? []).find((e) => e.startsWith("DATABASE_URL="))?.slice("DATABASE_URL=".length) : undefined;
};
const FILE_CONTAINERS = ["tpl-procfs", "tpl-volume", "tpl-dsovol"];
async function allHold(fileDsn: string, envDsn: string): Promise<void> {
  const t0 = performance.now();
  const done = (what: string) => () => console.log(`  ${what}: ${Math.round(performance.now() - t0)} ms`);
  await Promise.all([
    ...FILE_CONTAINERS.map((c) => eventually(`${c} holds the DSN`, async () => ((await cat(c, "dsn")) === fileDsn ? true : undefined), 20_000).then(done(c))),
    eventually("the env container holds DATABASE_URL", async () => ((await envOf("tpl-env")) === envDsn ? true : undefined), 20_000).then(done("tpl-env")),
  ]);
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-templates-"));
  await chmod(dir, 0o755);
  await mkdir(join(dir, "secrets"));
  await setSecret("tpldb", { user: USER, password: PASS1 });
  await setSecret("tplenv", { user: ENV_USER, password: ENV_PASS1 });
  await setSecret("tplbroken", { user: `tplbrokenuser${hex(8)}`, password: `tplbrokenpass${hex(8)}` });
  configPath = join(dir, "dso.yaml");
  await writeFile(configPath, config("postgres"));
  agent = await startAgent({ dir, config: configPath, dockerHost: d.host, name: DRIVER });
  await agent.waitForLog(/connected to Docker/);
  await mkdir(PLUGIN_DIR, { recursive: true });
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
}, 60_000);

afterAll(async () => {
  await Promise.all(containers.map((c) => docker.getContainer(c).remove({ force: true }).catch(() => {})));
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  if (process.env.DSO_TEST_DUMP) await Bun.write(process.env.DSO_TEST_DUMP, agent?.logs() ?? "");
  await agent?.stop("SIGKILL");
  await execAgent?.stop("SIGKILL");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  for (const v of ["volumes", "volumes-exec"]) Bun.spawnSync(["umount", "-l", join(dir, v)], { stderr: "ignore" });
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("templates: one render for every delivery path", () => {
  test("labelled containers (procfs, volume), a DSO volume, env injection and dso inject get the same outputs; source and template changes re-render; a missing key writes nothing", async () => {
    const t0 = performance.now();
    const phase = (what: string) => console.log(`${what}: ${Math.round(performance.now() - t0)} ms`);
    const dsoVolume = `tplvol-${RUN}`;
    const tmpfsVolume = `tpltmpfs-${RUN}`;
    await docker.createVolume({ Name: dsoVolume, Driver: DRIVER, DriverOpts: { secrets: "tpldb" } });
    await docker.createVolume({ Name: tmpfsVolume, DriverOpts: { type: "tmpfs", device: "tmpfs", o: "size=1m" } });
    volumes.push(dsoVolume, tmpfsVolume);
    await Promise.all([
      run("tpl-procfs", { tpl_files: RUN }, { Tmpfs: { [TARGET]: "rw,mode=0755" } }, NOTAR_IMAGE),
      run("tpl-volume", { tpl_files: RUN }, { Mounts: [{ Type: "volume", Source: tmpfsVolume, Target: TARGET }] }),
      run("tpl-dsovol", {}, { Mounts: [{ Type: "volume", Source: dsoVolume, Target: TARGET }] }),
      run("tpl-env", { tpl_env: RUN }, {}),
      run("tpl-broken", { tpl_broken: RUN }, { Tmpfs: { [TARGET]: "rw,mode=0755" } }),
    ]);
    await allHold(dsn("postgres", USER, PASS1), dsn("postgres", ENV_USER, ENV_PASS1));
    phase("first render everywhere");
    for (const c of FILE_CONTAINERS) expect(await cat(c, "app.env")).toBe(`password=${PASS1}\nuser=${USER}\n`);
    const mode = await execIn(docker, `tpl-volume-${RUN}`, ["ls", "-lL", `${TARGET}/dsn`]);
    expect(mode.stdout).toStartWith("-r--r-----");

    // dso inject (the same outputs, through the agent's API) and `dso plan` (outputs with their sources)
    const [injected, plan] = await Promise.all([agent.cli(["inject", `tpl-procfs-${RUN}`]), agent.cli(["plan", "tpldb"])]);
    expect(injected.code).toBe(0);
    expect(injected.stdout).toContain("dsn");
    expect(plan.stdout).toContain("dsn of tpldb ← tpldb (template); app.env of tpldb ← tpldb (env)");
    phase("inject, plan");

    // a missing key: no file, an error naming dso.yaml:line and the key, never a value
    await agent.waitForLog(/output \\"out\\": key \\"port\\" of secret \\"tplbroken\\" not found/);
    expect(agent.logs()).toContain(`${configPath}:32: output`);
    expect(await cat("tpl-broken", "out")).toBeUndefined();
    phase("inject, plan, missing key");

    // a change of the source: re-rendered in every file target by `dso rotate` (env: below, by the template change)
    await setSecret("tpldb", { user: USER, password: PASS2 });
    await setSecret("tplenv", { user: ENV_USER, password: ENV_PASS2 });
    expect((await agent.cli(["rotate", "tpldb"])).code).toBe(0);
    await Promise.all(FILE_CONTAINERS.map((c) => eventually(`${c} re-rendered`, async () => ((await cat(c, "dsn")) === dsn("postgres", USER, PASS2) ? true : undefined), 20_000)));
    // Right after the wave, `dso ls` may still show the container's previous pass (seen once in CI).
    const want = `tpl-procfs-${RUN} outputs: dsn ← tpldb (template); app.env ← tpldb (env)`;
    const ls = await eventually("dso ls lists the outputs", async () => {
      const out = (await agent.cli(["ls"])).stdout;
      return out.includes(want) ? out : undefined;
    }, 10_000);
    expect(ls).toContain(want);
    phase("source change re-rendered");

    // a change of the template text alone: reload, re-rendered
    await writeFile(configPath, config("mysql"));
    agent.proc.kill("SIGHUP");
    await allHold(dsn("mysql", USER, PASS2), dsn("mysql", ENV_USER, ENV_PASS2));
    phase("template change re-rendered");

    const logs = agent.logs();
    for (const value of [PASS1, PASS2, ENV_PASS1, ENV_PASS2, USER]) expect(logs.includes(value)).toBe(false);
  }, 90_000);

  test("memory scan: after the window the agent holds 0 copies of the planted values and 0 of the rendered DSN", async () => {
    // The reload's wave (the env container's re-creation last) ends its window; then a few seconds.
    await agent.waitForLog(/configuration reloaded/);
    await Bun.sleep(3_000);
    const binary = await dsoBinary();
    const main = dsoProcesses(agent.proc.pid!, binary).find((p) => p.role === "agent")!;
    const needles = [
      { label: "user", value: USER },
      { label: "password now", value: PASS2 },
      { label: "password before", value: PASS1 },
      { label: "rendered DSN", value: dsn("mysql", USER, PASS2) },
      { label: "rendered DSN before", value: dsn("postgres", USER, PASS2) },
      { label: "urlquery'd password", value: encodeURIComponent(PASS2) },
      // positive control: the agent read the secret's name from its config
      { label: "name (control)", value: "tplbroken" },
    ];
    const result = scanProcessMemory(main.pid, needles, { contextBytes: 32 });
    const counts = Object.fromEntries(needles.map((n) => [n.label, (result.counts.get(n.label)?.latin1 ?? 0) + (result.counts.get(n.label)?.utf16 ?? 0)]));
    console.log(`memory scan of the agent (${(result.bytesScanned / 1e6).toFixed(1)} MB):`, JSON.stringify(counts));
    for (const s of result.sightings.filter((x) => !x.label.includes("control")).slice(0, 8)) console.log(`  ${s.label}: …${s.before.toString("latin1").replace(/[^\x20-\x7e]/g, "·")}⟨V⟩${s.after.toString("latin1").replace(/[^\x20-\x7e]/g, "·")}…`);
    expect(result.bytesScanned).toBeGreaterThan(20 * 1024 * 1024);
    expect(counts["name (control)"]).toBeGreaterThan(0);
    const { "name (control)": _control, ...values } = counts;
    expect(values).toEqual({ user: 0, "password now": 0, "password before": 0, "rendered DSN": 0, "rendered DSN before": 0, "urlquery'd password": 0 });
  }, 30_000);

  test("exec mode: the same template, through an agent that cannot see the container's processes", async () => {
    const t0 = performance.now();
    // Its own config: tpldb and its templates only, for containers labelled tpl_exec (the first agent serves none of them).
    const execConfig = join(dir, "dso-exec.yaml");
    await writeFile(
      execConfig,
      config("postgres")
        .split("  - name: tplenv")[0]!
        .replace(join(dir, "volumes"), join(dir, "volumes-exec"))
        .replace(`targets: { labels: { tpl_files: "${RUN}" }, volumes: [tplvol-${RUN}] }`, `targets: { labels: { tpl_exec: "${RUN}" } }`),
    );
    execAgent = await startAgent({ dir, config: execConfig, dockerHost, name: `dsotpl-exec-${RUN}`, wrap: (argv) => ["unshare", "--pid", "--mount-proc", "--kill-child", "--", ...argv] });
    await execAgent.waitForLog(/connected to Docker/);
    await run("tpl-exec", { tpl_exec: RUN }, { Tmpfs: { [TARGET]: "rw,mode=0755" } });
    await eventually("tpl-exec holds the DSN", async () => ((await cat("tpl-exec", "dsn")) === dsn("postgres", USER, PASS2) ? true : undefined), 20_000);
    expect(await cat("tpl-exec", "app.env")).toBe(`password=${PASS2}\nuser=${USER}\n`);
    const listed = JSON.parse((await execAgent.cli(["ls", "--json"])).stdout || "{}") as { containers?: Array<{ name: string; deliveries: Array<{ mode?: string }> }> };
    expect(listed.containers?.find((c) => c.name === `tpl-exec-${RUN}`)?.deliveries[0]?.mode).toBe("exec");
    const mode = await execIn(docker, `tpl-exec-${RUN}`, ["ls", "-lL", `${TARGET}/dsn`]);
    expect(mode.stdout).toStartWith("-r--r-----");
    for (const value of [PASS1, PASS2, USER]) expect(execAgent.logs().includes(value)).toBe(false);
    console.log(`exec mode case: ${Math.round(performance.now() - t0)} ms`);
  }, 60_000);
});
