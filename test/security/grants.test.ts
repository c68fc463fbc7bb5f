/**
 * Who may receive a secret (issue 18, findings 2, 3 and 8), against the real daemon and the
 * compiled agent, one agent for the whole file:
 * - only labels given at `docker run` grant: an image's labels never do, and when the image cannot
 *   be inspected (removed with `rmi -f`) the container gets nothing (fail closed);
 * - a name dso.yaml does not declare is refused (labels, DSO volumes, `dso inject`), and a
 *   secret's `targets` bound every way of asking for it;
 * - one container's hostile dso.secrets label (a 3,000-character name, 6,000 names) gets that
 *   container an error and leaves every other container rotating.
 * Every planted value is looked for in the agent's log at the end (positive control: the values
 * do arrive where they are granted).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const PID = process.pid;
const VALUES = {
  payments_key: "grants-planted-PAYMENTS-3f9a",
  team_key: "grants-planted-TEAM-7c2e",
  shared: "grants-planted-SHARED-1b8d",
  rot_key: "grants-planted-ROT1-5e0c",
  prod_db: "grants-planted-UNDECLARED-9d4f",
};
const ROTATED = "grants-planted-ROT2-2a7b";
const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
const DRIVER = `dso-grants-${PID}`;
const PLUGIN_DIR = "/run/docker/plugins";
const TEAM = `grants-team-${PID}`;

let docker: Dockerode;
let dir: string;
let secretsDir: string;
let volumesRoot: string;
let agent: AgentProcess;
const containers: string[] = [];
const images: string[] = [];
const volumes: string[] = [];

async function create(name: string, labels: Record<string, string>, image = BUSYBOX_IMAGE): Promise<Dockerode.Container> {
  const c = await docker.createContainer({
    name: `${name}-${PID}`,
    Image: image,
    Cmd: ["sh", "-c", IDLE],
    Labels: labels,
    HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
  });
  containers.push(c.id);
  return c;
}

async function run(name: string, labels: Record<string, string>, image = BUSYBOX_IMAGE): Promise<Dockerode.Container> {
  const c = await create(name, labels, image);
  await c.start();
  return c;
}

async function fileIn(id: string, path: string): Promise<string | undefined> {
  const r = await execIn(docker, id, ["cat", path]);
  return r.code === 0 ? r.stdout : undefined;
}

/** An image made from the test image with extra LABEL lines (`docker commit --change`). */
async function labelledImage(tag: string, labelLines: string[]): Promise<string> {
  const base = await docker.createContainer({ Image: BUSYBOX_IMAGE, Cmd: ["true"], HostConfig: { NetworkMode: "none" } });
  const repo = `dso-test/grants-${tag}-${PID}`;
  await base.commit({ repo, tag: "1", changes: labelLines.map((l) => `LABEL ${l}`) } as never);
  await base.remove({ force: true });
  images.push(`${repo}:1`);
  return `${repo}:1`;
}

/** A wave over this one container, finished when the command returns. */
async function sync(container: Dockerode.Container): Promise<void> {
  await agent.cli(["sync", container.id]);
}

function auditLines(): Array<Record<string, unknown>> {
  return agent
    .logs()
    .split("\n")
    .filter((line) => line.includes('"tag":"audit"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  await ensureTestImages(docker);
  dir = await mkdtemp(join(tmpdir(), "dso-grants-"));
  await chmod(dir, 0o755);
  secretsDir = join(dir, "secrets");
  volumesRoot = join(dir, "volumes");
  await mkdir(secretsDir);
  for (const [name, value] of Object.entries(VALUES)) await writeFile(join(secretsDir, name), value);
  const config = join(dir, "dso.yaml");
  await writeFile(
    config,
    [
      "providers:",
      "  local:",
      "    type: file",
      "    config:",
      `      path: ${secretsDir}`,
      "agent:",
      `  volumes_root: ${volumesRoot}`,
      "  audit: { enabled: true }",
      "  watch:",
      "    polling_interval: 1s",
      "secrets:",
      "  - name: payments_key",
      "    targets: { labels: { app: payments } }",
      "  - name: team_key",
      `    targets: { containers: [${TEAM}] }`,
      "  - name: shared",
      "  - name: rot_key",
      "",
    ].join("\n"),
  );
  await mkdir(PLUGIN_DIR, { recursive: true });
  agent = await startAgent({ dir, config, dockerHost: d.host, name: DRIVER });
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  await Bun.$`ln -s ${agent.socket} ${join(PLUGIN_DIR, `${DRIVER}.sock`)}`.quiet();
});

afterAll(async () => {
  for (const id of containers) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  for (const v of volumes) await docker.getVolume(v).remove().catch(() => {});
  for (const image of images) await docker.getImage(image).remove({ force: true }).catch(() => {});
  await agent?.stop("SIGTERM");
  await rm(join(PLUGIN_DIR, `${DRIVER}.sock`), { force: true });
  Bun.spawnSync(["umount", "-l", volumesRoot]);
  await rm(dir, { recursive: true, force: true });
});

describe("finding 2: only run-time labels grant", () => {
  test("an image's LABEL app=payments grants nothing; the same label given at docker run does", async () => {
    const image = await labelledImage("app", ["app=payments"]);
    const fromImage = await run("grants-imglabel", {}, image);
    const atRun = await run("grants-runlabel", { app: "payments" });
    expect(await eventually("run-time label delivery", () => fileIn(atRun.id, "/run/secrets/payments_key"))).toBe(VALUES.payments_key);
    await sync(fromImage);
    expect(await fileIn(fromImage.id, "/run/secrets/payments_key")).toBeUndefined();
  });

  test("a run-time label equal to the image's (same key and value) counts as the image's: not granting", async () => {
    const image = images.find((i) => i.includes("grants-app-"))!;
    const both = await run("grants-samelabel", { app: "payments" }, image);
    await sync(both);
    expect(await fileIn(both.id, "/run/secrets/payments_key")).toBeUndefined();
  });

  test("an image carrying dso.reloader=true and dso.secrets gets nothing", async () => {
    const image = await labelledImage("dso", ["dso.reloader=true", "dso.secrets=shared"]);
    const c = await run("grants-imgdso", {}, image);
    await sync(c);
    expect(await fileIn(c.id, "/run/secrets/shared")).toBeUndefined();
  });

  test("image removed with rmi -f: the container gets nothing, with an error naming it (fail closed)", async () => {
    const image = await labelledImage("gone", ["dso.reloader=true", "dso.secrets=shared"]);
    const c = await create("grants-rmi", { app: "payments" }, image);
    const { Id: imageId } = await docker.getImage(image).inspect();
    await docker.getImage(imageId).remove({ force: true });
    await c.start();
    await agent.waitForLog(new RegExp(`grants-rmi-${PID}.*image.*cannot be inspected`), 10_000);
    await sync(c);
    await sync(c);
    expect(await fileIn(c.id, "/run/secrets/shared")).toBeUndefined();
    expect(await fileIn(c.id, "/run/secrets/payments_key")).toBeUndefined();
    expect(auditLines().some((a) => a.outcome === "DELIVERY_REFUSED" && JSON.stringify(a.container).includes(`grants-rmi-${PID}`))).toBe(true);
  });
});

describe("finding 3: undeclared names are refused; targets bound every way of asking", () => {
  test("a label naming a secret dso.yaml does not declare: refused with one line naming container and label, audited", async () => {
    const c = await run("grants-undeclared", { "dso.reloader": "true", "dso.secrets": "prod_db,shared" });
    expect(await eventually("declared secret delivered", () => fileIn(c.id, "/run/secrets/shared"))).toBe(VALUES.shared);
    const line = await agent.waitForLog(new RegExp(`grants-undeclared-${PID}.*dso\\.secrets.*prod_db`), 10_000);
    expect(line).toContain("not declare");
    expect(await fileIn(c.id, "/run/secrets/prod_db")).toBeUndefined();
    const audit = auditLines().find((a) => a.outcome === "DELIVERY_REFUSED" && JSON.stringify(a.container).includes(`grants-undeclared-${PID}`));
    expect(JSON.stringify(audit?.secrets)).toContain("prod_db");
  });

  test("a label asking for a secret whose targets leave the container out: refused; the target gets it", async () => {
    const outsider = await run("grants-outsider", { "dso.reloader": "true", "dso.secrets": "team_key,shared" });
    const team = await docker.createContainer({
      name: TEAM,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", IDLE],
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw,mode=0755" } },
    });
    containers.push(team.id);
    await team.start();
    expect(await eventually("target delivery", () => fileIn(team.id, "/run/secrets/team_key"))).toBe(VALUES.team_key);
    expect(await eventually("outsider's declared secret", () => fileIn(outsider.id, "/run/secrets/shared"))).toBe(VALUES.shared);
    await agent.waitForLog(new RegExp(`grants-outsider-${PID}.*dso\\.secrets.*team_key.*targets`), 10_000);
    expect(await fileIn(outsider.id, "/run/secrets/team_key")).toBeUndefined();
  });

  test("a DSO volume asking for an undeclared or out-of-targets secret does not start; a declared one does", async () => {
    const volume = async (name: string, secrets: string) => {
      const full = `${name}-${PID}`;
      await docker.createVolume({ Name: full, Driver: DRIVER, DriverOpts: { secrets } });
      volumes.push(full);
      const c = await docker.createContainer({
        name: `${name}-c-${PID}`,
        Image: BUSYBOX_IMAGE,
        Cmd: ["sh", "-c", "cat /run/secrets/*"],
        HostConfig: { NetworkMode: "none", Mounts: [{ Type: "volume", Source: full, Target: "/run/secrets" }] },
      });
      containers.push(c.id);
      return c.start().then(
        () => "started",
        (e: Error) => e.message,
      );
    };
    expect(await volume("grants-vol-ok", "shared")).toBe("started");
    const undeclared = await volume("grants-vol-undeclared", "prod_db");
    expect(undeclared).toContain("prod_db");
    expect(undeclared).toContain("DELIVERY_REFUSED");
    const outside = await volume("grants-vol-team", "team_key");
    expect(outside).toContain("team_key");
    expect(outside).toContain("targets");
  });

  test("dso inject refuses an undeclared secret and one whose targets leave the container out", async () => {
    const c = await run("grants-inject", { "dso.reloader": "true", "dso.secrets": "shared" });
    await eventually("base delivery", () => fileIn(c.id, "/run/secrets/shared"));
    const undeclared = await agent.cli(["inject", c.id, "--secret", "prod_db"]);
    expect(undeclared.code).not.toBe(0);
    expect(undeclared.stderr).toContain("prod_db");
    const outside = await agent.cli(["inject", c.id, "--secret", "team_key"]);
    expect(outside.code).not.toBe(0);
    expect(outside.stderr).toContain("targets");
    expect(await fileIn(c.id, "/run/secrets/prod_db")).toBeUndefined();
    expect(await fileIn(c.id, "/run/secrets/team_key")).toBeUndefined();
    // Positive control: a declared secret without targets is injected.
    const ok = await agent.cli(["inject", c.id, "--secret", "rot_key"]);
    expect(ok.code).toBe(0);
    expect(await fileIn(c.id, "/run/secrets/rot_key")).toBe(VALUES.rot_key);
  });
});

describe("finding 8: one container's hostile label stays its own problem", () => {
  test("a 3,000-character name and 6,000 names: those containers get an error, a normal one keeps rotating", async () => {
    const long = await run("grants-longname", { "dso.reloader": "true", "dso.secrets": "x".repeat(3000) });
    const many = await run("grants-manynames", {
      "dso.reloader": "true",
      "dso.secrets": Array.from({ length: 6000 }, (_, i) => `n${i}`).join(","),
    });
    const normal = await run("grants-normal", { "dso.reloader": "true", "dso.secrets": "rot_key", "dso.update.strategy": "none" });
    expect(await eventually("normal delivery", () => fileIn(normal.id, "/run/secrets/rot_key"))).toBe(VALUES.rot_key);
    await writeFile(join(secretsDir, "rot_key"), ROTATED);
    await eventually("rotation of the normal container", async () => ((await fileIn(normal.id, "/run/secrets/rot_key")) === ROTATED ? true : undefined), 10_000);
    const longLine = await agent.waitForLog(new RegExp(`grants-longname-${PID}.*dso\\.secrets.*3000 characters`), 5_000);
    expect(longLine.length).toBeLessThan(1000);
    await agent.waitForLog(new RegExp(`grants-manynames-${PID}.*dso\\.secrets.*6000 secrets`), 5_000);
    expect(await fileIn(long.id, "/run/secrets/rot_key")).toBeUndefined();
    expect(await fileIn(many.id, "/run/secrets/n1")).toBeUndefined();
  });

  test("no planted value in the agent's log, and the agent still answers", async () => {
    const logs = agent.logs();
    for (const value of [...Object.values(VALUES), ROTATED]) expect(logs).not.toContain(value);
    expect((await agent.cli(["status"])).code).toBe(0);
  });
});
