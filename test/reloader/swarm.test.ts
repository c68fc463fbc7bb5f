import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { SecretStore } from "../../src/secrets/store.ts";
import { VersionMarkers } from "../../src/secrets/version-marker.ts";
import { parseConfig } from "../../src/config/index.ts";
import { isSwarmManager, MANAGED_LABEL, SwarmRotator } from "../../src/reloader/swarm.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { quietLog as quiet, testSource } from "../support/test-source.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

let docker: Dockerode;
let dockerHost: string;
let agent: AgentProcess | undefined;
let dir: string;
let provider: ProviderProcess;
let rotator: SwarmRotator;
let serviceId: string;
const SERVICE = `dso-swarm-${process.pid}`;
/** Issue 20: a service whose secret is delivered through a template (a rendered Swarm secret). */
const TEMPLATED = `dso-swarm-tpl-${process.pid}`;
const TEMPLATE_CONFIG = `secrets:\n  - name: tpl_db\n    templates:\n      - file: dsn\n        template: "postgres://{{ .user }}:{{ .password | urlquery }}@db/app"\n`;
let templatedId = "";
/** Issue 20: a secret only a Swarm service uses, rotated by `dso rotate` with a 1 h poll interval. */
const ROTATED = `dso-swarm-rot-${process.pid}`;
let rotatedId = "";

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 40_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await Bun.sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The content of /run/secrets/<file> in the service's running task, once it equals `expected`. */
async function taskSees(file: string, expected: string, service = SERVICE): Promise<string> {
  return waitFor(`task to see ${expected}`, async () => {
    const tasks = await docker.listContainers({ filters: { label: [`com.docker.swarm.service.name=${service}`] } });
    for (const t of tasks) {
      const exec = await docker.getContainer(t.Id).exec({ Cmd: ["cat", `/run/secrets/${file}`], AttachStdout: true, AttachStderr: true });
      const stream = await exec.start({});
      const chunks: Buffer[] = [];
      await new Promise<void>((resolve) => {
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", resolve);
      });
      const text = Buffer.concat(chunks).toString("latin1");
      if (text.includes(expected)) return expected;
    }
    return undefined;
  });
}

function managedSecrets(): Promise<Array<{ ID: string }>> {
  return docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } }) as Promise<Array<{ ID: string }>>;
}

beforeAll(async () => {
  const d = await ensureDocker();
  docker = d.docker;
  dockerHost = d.host;
  await ensureTestImages(docker);
  if (!(await isSwarmManager(docker))) await docker.swarmInit({ ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1" });
  dir = await mkdtemp(join(tmpdir(), "dso-swarm-"));
  await writeFile(join(dir, "db_password"), "swarm-value-one");
  await writeFile(join(dir, "tpl_db.json"), JSON.stringify({ user: "swarmuser", password: "swarm pass/1" }));
  const { config } = parseConfig(`providers:\n  local:\n    type: file\n    allow_undeclared: true\n    config:\n      path: ${dir}\n${TEMPLATE_CONFIG}`, "dso.yaml", {});
  provider = new ProviderProcess({ configure: { name: "local", type: "file", config: { path: dir } } });
  const store = new SecretStore(false);
  store.setSpecs(config.secrets);
  const source = testSource({ store, provider });
  // Wired as the agent wires it: the secret is named only in the service's labels.
  rotator = new SwarmRotator({ docker, store, config: () => config, log: quiet, markers: new VersionMarkers(randomBytes(32)), source });
  const created = (await docker.createService({
    Name: SERVICE,
    Labels: { "dso.reloader": "true", "dso.secrets": "db_password" },
    TaskTemplate: {
      ContainerSpec: { Image: BUSYBOX_IMAGE, Command: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.2; done'] },
      RestartPolicy: { Condition: "none" },
    },
    UpdateConfig: { Parallelism: 1, Order: "start-first" },
  } as never)) as { id?: string; ID?: string };
  serviceId = created.id ?? created.ID ?? "";
});

afterAll(async () => {
  await agent?.stop();
  if (rotatedId) await docker.getService(rotatedId).remove().catch(() => {});
  await docker.getService(serviceId).remove().catch(() => {});
  if (templatedId) await docker.getService(templatedId).remove().catch(() => {});
  rotator?.stop();
  await provider?.stop();
  await Bun.sleep(500);
  await docker.swarmLeave({ force: true }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe("swarm rotation through service updates", () => {
  test("a labelled service gets its secret as a swarm secret; a change rolls a new version", async () => {
    // The agent's connect pass and its first poll overlap: one update, no name clash.
    const [first, overlapping] = await Promise.all([rotator.reconcile(), rotator.reconcile()]);
    expect(first).toEqual([{ service: SERVICE, action: "updated", secrets: ["db_password"] }]);
    expect(overlapping).toEqual([{ service: SERVICE, action: "unchanged", secrets: ["db_password"] }]);
    await taskSees("db_password", "swarm-value-one");
    // Swarm secret names are cluster-wide and public to every manager: no guess of the value checks against them.
    const names = (await docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } })).map((x) => x.Spec?.Name ?? "");
    expect(names.length).toBe(1);
    expect(names.join(" ")).not.toContain(new Bun.CryptoHasher("sha256").update("swarm-value-one").digest("hex").slice(0, 12));

    // Nothing changed: no update, no new secret object, and no value read (the service already
    // names the versions the known fingerprints give; the agent runs this pass every 60 s).
    const fetch = spyOn(provider, "fetch");
    expect((await rotator.reconcile())[0]?.action).toBe("unchanged");
    expect(fetch).toHaveBeenCalledTimes(0);
    // `dso rotate` reads the value whatever is known (a change shows up now).
    expect((await rotator.reconcile(new Set(["db_password"]), { refresh: true }))[0]?.action).toBe("unchanged");
    expect(fetch).toHaveBeenCalledTimes(1);
    fetch.mockRestore();

    const [before] = await managedSecrets();
    await writeFile(join(dir, "db_password"), "swarm-value-two");
    // As `dso rotate` asks (no poll runs here to learn the new fingerprint first).
    const second = await rotator.reconcile(new Set(["db_password"]), { refresh: true });
    expect(second[0]?.action).toBe("updated");
    // Swarm itself would delete a version that only running tasks (and the rollback spec) still
    // use; DSO keeps it until they are gone (start-first: the old task runs until the new one does).
    expect((await managedSecrets()).map((s) => s.ID)).toContain(before!.ID);
    await taskSees("db_password", "swarm-value-two");

    // The old version goes once no task uses it, without another reconcile: the rotator sweeps.
    const remaining = await waitFor("old secret removal", async () => {
      const managed = await managedSecrets();
      return managed.length === 1 ? managed : undefined;
    });
    expect(remaining[0]?.ID).not.toBe(before!.ID);
  });

  test("a service whose secret has a template gets the rendered output as a Swarm secret", async () => {
    const created = (await docker.createService({
      Name: TEMPLATED,
      Labels: { "dso.reloader": "true", "dso.secrets": "tpl_db" },
      TaskTemplate: {
        ContainerSpec: { Image: BUSYBOX_IMAGE, Command: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.2; done'] },
        RestartPolicy: { Condition: "none" },
      },
    } as never)) as { id?: string; ID?: string };
    templatedId = created.id ?? created.ID ?? "";
    const results = await rotator.reconcile(new Set(["tpl_db"]));
    expect(results.find((r) => r.service === TEMPLATED)?.action).toBe("updated");
    await taskSees("dsn", "postgres://swarmuser:swarm+pass%2F1@db/app", TEMPLATED);
  });

  test("the compiled agent, 1 h polling: `dso rotate` of a secret only a Swarm service uses rolls the service before it answers", async () => {
    // The in-process rotator's services are done with: the agent below sees only its own.
    rotator.stop();
    await Promise.all([serviceId, templatedId].map((id) => docker.getService(id).remove().catch(() => {})));
    const agentDir = join(dir, "agent");
    await mkdir(join(agentDir, "secrets"), { recursive: true });
    await writeFile(join(agentDir, "secrets", "only_swarm"), "rotate-value-one");
    const config = [
      "providers:",
      "  local:",
      "    type: file",
      "    allow_undeclared: true",
      "    config:",
      `      path: ${join(agentDir, "secrets")}`,
      "agent:",
      "  watch:",
      "    polling_interval: 1h",
      "",
    ].join("\n");
    await writeFile(join(agentDir, "dso.yaml"), config);
    agent = await startAgent({ dir: agentDir, config: join(agentDir, "dso.yaml"), dockerHost });
    await agent.waitForLog(/connected to Docker/);
    const created = (await docker.createService({
      Name: ROTATED,
      Labels: { "dso.reloader": "true", "dso.secrets": "only_swarm" },
      TaskTemplate: {
        ContainerSpec: { Image: BUSYBOX_IMAGE, Command: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.2; done'] },
        RestartPolicy: { Condition: "none" },
      },
      UpdateConfig: { Parallelism: 1, Order: "start-first" },
    } as never)) as { id?: string; ID?: string };
    rotatedId = created.id ?? created.ID ?? "";
    // The service-create event brings the first version.
    await taskSees("only_swarm", "rotate-value-one", ROTATED);
    const secretIdNow = async () =>
      ((await docker.getService(rotatedId).inspect()) as { Spec: { TaskTemplate: { ContainerSpec: { Secrets?: Array<{ SecretID: string }> } } } }).Spec.TaskTemplate.ContainerSpec.Secrets?.[0]?.SecretID;
    const first = await secretIdNow();
    expect(first).toBeString();

    await writeFile(join(agentDir, "secrets", "only_swarm"), "rotate-value-two");
    const started = performance.now();
    const rotated = await agent.cli(["rotate", "only_swarm"]);
    const answeredMs = performance.now() - started;
    expect(rotated.stderr).toBe("");
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain(ROTATED);
    expect(rotated.stdout).not.toContain("rotate-value-two");
    // Before `dso rotate` answered, the service already pointed at a new version (no poll, no 60 s pass).
    const second = await secretIdNow();
    expect(second).toBeString();
    expect(second).not.toBe(first);
    await taskSees("only_swarm", "rotate-value-two", ROTATED);
    const runningMs = performance.now() - started;
    console.log(`dso rotate of a Swarm-only secret (1 h polling): answered in ${Math.round(answeredMs)} ms, task running the new value ${Math.round(runningMs)} ms after the call`);

    // The one change path: a change that a container start's fetch notices (no poll, no rotate)
    // reaches the Swarm service too, with cause `fetch`.
    await writeFile(join(agentDir, "secrets", "only_swarm"), "rotate-value-three");
    const plain = await docker.createContainer({
      name: `dso-swarm-plain-${process.pid}`,
      Image: BUSYBOX_IMAGE,
      Cmd: ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.2; done'],
      Labels: { "dso.reloader": "true", "dso.secrets": "only_swarm" },
      HostConfig: { NetworkMode: "none", Tmpfs: { "/run/secrets": "rw" }, AutoRemove: true },
    });
    try {
      await plain.start();
      await taskSees("only_swarm", "rotate-value-three", ROTATED);
    } finally {
      await plain.remove({ force: true }).catch(() => {});
    }
    expect(agent.logs()).not.toContain("rotate-value-two");
    expect(agent.logs()).not.toContain("rotate-value-three");
  }, 90_000);
});
