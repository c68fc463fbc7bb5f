/**
 * Swarm across hosts: two dockerd daemons, each in its own network namespace, joined by a veth
 * pair into one swarm (manager in A, worker in B). The compiled agent talks only to the manager;
 * the service's tasks run only on the worker. A change at the file provider must reach every task
 * on the worker (checked through the worker's own socket), and the old DSO-made Swarm secret must
 * go once no task runs with it. Prints the figure: change → every task running the new secret.
 *
 * A long run, not part of `bun run test` (it takes 60–90 s of the suite's 15-minute budget on a
 * 2-core machine): `DSO_SWARM_HOSTS=1 bun test --timeout 120000 test/e2e/swarm-hosts.test.ts`
 * (root, iproute2). docs/reliability.md has its figures.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MANAGED_LABEL } from "../../src/reloader/swarm.ts";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { eventually, execIn } from "../support/container-exec.ts";
import { startExtraDocker, type ExtraDocker } from "../support/docker-daemon.ts";
import { createNetnsPair, type NetnsPair } from "../support/netns.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

const SERVICE = `dso-hosts-${process.pid}`;
const REPLICAS = 3;
const FIRST = "swarm-hosts-value-ONE-4Tg7";
const SECOND = "swarm-hosts-value-TWO-8Jm2";
const SWARM_PORT = 2377;
/** Local networks (docker_gwbridge) and overlays (ingress) get subnets of 10.231/16 too, inside the namespaces. */
const LOCAL_POOL = "base=10.231.128.0/18,size=24";
const OVERLAY_POOL = "10.231.64.0/18";
const MONITOR_NS = 1_000_000_000;
const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.2; done';
/** A rolling update of three tasks on a busy two-core machine. */
const CONVERGE_TIMEOUT_MS = 60_000;
/** Two daemons, a swarm, an agent and two rolling updates (about 35 s on a quiet machine). */
const TEST_TIMEOUT_MS = 150_000;

let pair: NetnsPair | undefined;
let manager: ExtraDocker | undefined;
let worker: ExtraDocker | undefined;
let agent: AgentProcess | undefined;
let dir: string;
let secretsDir: string;
let workerNodeId: string;

interface TaskInfo {
  ID: string;
  NodeID?: string;
  DesiredState?: string;
  Status?: { State?: string; Err?: string; ContainerStatus?: { ContainerID?: string } };
}

async function managedSecrets(): Promise<Array<{ ID: string; Spec?: { Name?: string } }>> {
  return (await manager!.docker.listSecrets({ filters: { label: [`${MANAGED_LABEL}=true`] } })) as Array<{ ID: string; Spec?: { Name?: string } }>;
}

/**
 * What every task meant to run holds in /run/secrets/db_password, read through the worker's
 * socket. Throws (eventually() retries and reports the last reason) until exactly REPLICAS tasks
 * run on the worker, no older container of the service is left running there, and each holds
 * `expected`.
 */
async function everyTaskHolds(expected: string): Promise<string[]> {
  const tasks = (await manager!.docker.listTasks({ filters: { service: [SERVICE], "desired-state": ["running"] } })) as TaskInfo[];
  const states = tasks.map((t) => `${t.Status?.State}${t.NodeID === workerNodeId ? "" : "(not on worker)"}${t.Status?.Err ? `: ${t.Status.Err}` : ""}`);
  if (tasks.length !== REPLICAS || tasks.some((t) => t.Status?.State !== "running" || t.NodeID !== workerNodeId)) {
    throw new Error(`tasks: ${states.join(", ") || "none"}`);
  }
  const onWorker = await worker!.docker.listContainers({ filters: { label: [`com.docker.swarm.service.name=${SERVICE}`] } });
  if (onWorker.length !== REPLICAS) throw new Error(`${onWorker.length} containers of the service run on the worker`);
  const values: string[] = [];
  for (const task of tasks) {
    const read = await execIn(worker!.docker, task.Status?.ContainerStatus?.ContainerID ?? "", ["cat", "/run/secrets/db_password"]);
    // Only whether it matches: a test failure message must not carry the value either.
    if (read.code !== 0 || read.stdout !== expected) throw new Error(`task ${task.ID}: ${read.code !== 0 ? read.stderr.trim() : "another value"}`);
    values.push(read.stdout);
  }
  return values;
}

async function formSwarm(): Promise<void> {
  const a = pair!.a.address;
  const b = pair!.b.address;
  await manager!.docker.swarmInit({
    ListenAddr: `${a}:${SWARM_PORT}`,
    AdvertiseAddr: a,
    DefaultAddrPool: [OVERLAY_POOL],
    SubnetSize: 24,
  });
  const inspect = (await manager!.docker.swarmInspect()) as { JoinTokens: { Worker: string } };
  await worker!.docker.swarmJoin({ ListenAddr: `${b}:${SWARM_PORT}`, AdvertiseAddr: b, RemoteAddrs: [`${a}:${SWARM_PORT}`], JoinToken: inspect.JoinTokens.Worker });
  workerNodeId = await eventually("the worker node to be ready", async () => {
    const nodes = (await manager!.docker.listNodes()) as Array<{ ID: string; Spec?: { Role?: string }; Status?: { State?: string; Addr?: string } }>;
    const ready = nodes.find((n) => n.Spec?.Role === "worker" && n.Status?.State === "ready");
    return ready?.Status?.Addr === b ? ready.ID : undefined;
  });
}

async function createService(): Promise<void> {
  await manager!.docker.createService({
    Name: SERVICE,
    Labels: { "dso.reloader": "true", "dso.secrets": "db_password" },
    TaskTemplate: {
      ContainerSpec: { Image: BUSYBOX_IMAGE, Command: ["sh", "-c", IDLE] },
      Placement: { Constraints: ["node.role==worker"] },
      RestartPolicy: { Condition: "none" },
    },
    Mode: { Replicated: { Replicas: REPLICAS } },
    // All tasks in one step, watched for 1 s (Swarm's defaults: one at a time, 5 s each; the
    // rollout time is Swarm's policy, not DSO's, and one-at-a-time on a busy machine overruns the suite budget).
    UpdateConfig: { Parallelism: REPLICAS, Delay: 0, Monitor: MONITOR_NS, Order: "start-first", FailureAction: "pause" },
    // No networks and no published ports: no overlay or ingress (IPVS) on the task's path.
    EndpointSpec: { Mode: "dnsrr" },
  } as never);
}

const ENABLED = process.env.DSO_SWARM_HOSTS === "1";

beforeAll(async () => {
  if (!ENABLED) return;
  pair = createNetnsPair();
  [manager, worker] = await Promise.all([
    startExtraDocker({ netns: pair.a.netns, args: ["--default-address-pool", LOCAL_POOL] }),
    startExtraDocker({ netns: pair.b.netns, args: ["--default-address-pool", LOCAL_POOL] }),
  ]);
  // The network between the hosts is closed: the worker has the image locally (docker import).
  await ensureTestImages(worker.docker);
  await formSwarm();
  dir = await mkdtemp(join(tmpdir(), "dso-swarm-hosts-"));
  await chmod(dir, 0o755);
  secretsDir = join(dir, "secrets");
  await mkdir(secretsDir);
  await writeFile(join(secretsDir, "db_password"), FIRST);
  const configPath = join(dir, "dso.yaml");
  await writeFile(
    configPath,
    ["providers:", "  local:", "    type: file", "    allow_undeclared: true", "    config:", `      path: ${secretsDir}`, "agent:", "  watch:", "    polling_interval: 1s", ""].join("\n"),
  );
  agent = await startAgent({ dir, config: configPath, dockerHost: manager.host });
});

afterAll(async () => {
  if (!ENABLED) return;
  try {
    await agent?.stop();
    await manager?.docker.getService(SERVICE).remove().catch(() => {});
    await worker?.docker.swarmLeave({ force: true }).catch(() => {});
    await manager?.docker.swarmLeave({ force: true }).catch(() => {});
    await Promise.all([manager?.stop(), worker?.stop()]);
  } finally {
    pair?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
});

describe.skipIf(!ENABLED)("swarm across hosts (two daemons in their own network namespaces)", () => {
  test("the manager's agent rotates a secret into every task on the worker and removes the old version", async () => {
    await agent!.waitForLog(/connected to Docker/, CONVERGE_TIMEOUT_MS);
    // Created while the agent runs: the service-create event brings its first secret version.
    await createService();
    const firstValues = await eventually("every task on the worker holding the first value", () => everyTaskHolds(FIRST), CONVERGE_TIMEOUT_MS);
    expect(firstValues).toEqual(Array(REPLICAS).fill(FIRST));
    // Nothing of the service runs on the manager: the values reached the worker through Swarm.
    expect(await manager!.docker.listContainers()).toEqual([]);
    const [oldVersion, ...others] = await managedSecrets();
    expect(others).toEqual([]);

    const changedAt = performance.now();
    await writeFile(join(secretsDir, "db_password"), SECOND);
    const newVersion = await eventually(
      "the service to point at a new secret version",
      async () => {
        const service = (await manager!.docker.getService(SERVICE).inspect()) as {
          Spec: { TaskTemplate: { ContainerSpec: { Secrets?: Array<{ SecretID: string; File?: { Name?: string } }> } } };
        };
        const refs = service.Spec.TaskTemplate.ContainerSpec.Secrets ?? [];
        expect(refs.map((r) => r.File?.Name)).toEqual(["/run/secrets/db_password"]);
        return refs[0]!.SecretID !== oldVersion!.ID ? refs[0]!.SecretID : undefined;
      },
      CONVERGE_TIMEOUT_MS,
    );
    const specAt = performance.now();
    // The old tasks still run with the old version while the update rolls: it must still exist.
    expect((await managedSecrets()).map((s) => s.ID)).toContain(oldVersion!.ID);

    const secondValues = await eventually("every task on the worker holding the new value", () => everyTaskHolds(SECOND), CONVERGE_TIMEOUT_MS);
    const convergedAt = performance.now();
    expect(secondValues).toEqual(Array(REPLICAS).fill(SECOND));

    const remaining = await eventually(
      "the old version to be removed",
      async () => {
        const managed = await managedSecrets();
        return managed.length === 1 ? managed : undefined;
      },
      CONVERGE_TIMEOUT_MS,
    );
    const removedAt = performance.now();
    expect(remaining.map((s) => s.ID)).toEqual([newVersion]);

    const ms = (t: number) => `${((t - changedAt) / 1000).toFixed(1)} s`;
    console.log(
      [
        `swarm across hosts (${REPLICAS} tasks on the worker, parallelism ${REPLICAS}, monitor 1 s, start-first, polling 1 s):`,
        `  change -> service points at new version: ${ms(specAt)}`,
        `  change -> every task running the new secret: ${ms(convergedAt)}`,
        `  change -> old version removed: ${ms(removedAt)}`,
      ].join("\n"),
    );
    // No value in the agent's log.
    expect(agent!.logs()).not.toContain(FIRST);
    expect(agent!.logs()).not.toContain(SECOND);
  }, TEST_TIMEOUT_MS);
});
