/**
 * The composition root, in process: `new Agent(config, { boundaries })` wires the real parts —
 * poll scheduler, change path, wave scheduler, reconciler, planner, delivery modes, control API
 * over its unix socket, audit trail — with the two boundaries replaced: a fake Docker (an in-memory
 * object answering only the dockerode calls the agent makes) and an in-process provider (a fake
 * ProviderProcess). No dockerd, no binary, no child process, no root.
 *
 * The fake daemon remaps user namespaces (`SecurityOptions: name=userns`), so a target on a
 * tmpfs-backed local volume is written through the archive API: every delivery is a putArchive the
 * fake records and unpacks (its `..data` link and marker are what the agent reads back). The
 * volume's mountpoint is /dev/shm, a tmpfs mount root the mode picker can check from here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { PassThrough } from "node:stream";
import { extract } from "tar-stream";
import { Agent } from "../../src/agent/agent.ts";
import { callAgent } from "../../src/api/client.ts";
import { parseConfig } from "../../src/config/index.ts";
import type { DockerConnection } from "../../src/docker/client.ts";
import type { SecretRef } from "../../src/rpc/protocol.ts";
import type { ProviderProcess } from "../../src/rpc/supervisor.ts";
import type { FetchedItem } from "../../src/rpc/wire-values.ts";
import { secretBytes } from "../support/secret-bytes.ts";

const TARGET = "/run/secrets";
const VOLUME = "app-secrets";

/** What one container's target holds, as unpacked from the archives put into it. */
interface Held {
  links: Map<string, string>;
  files: Map<string, string>;
}

async function unpack(tar: Buffer, into: Held): Promise<void> {
  const reader = extract();
  reader.on("entry", (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: unknown) => void chunks.push(chunk as Buffer));
    stream.on("end", () => {
      const name = header.name.replace(/\/$/, "");
      if (header.type === "symlink") {
        into.links.set(name, header.linkname ?? "");
        into.files.delete(name);
      } else if (header.type === "file") {
        into.files.set(name, Buffer.concat(chunks).toString());
        into.links.delete(name);
      }
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => {
    reader.on("finish", () => resolve());
    reader.on("error", reject);
  });
  reader.end(tar);
  await done;
}

/** The dockerode calls the agent makes, answered from memory. */
class FakeDocker {
  readonly containers = new Map<string, { name: string; labels: Record<string, string> }>();
  readonly held = new Map<string, Held>();
  /** Every putArchive, in order: container id and the file the target's `..data` then named. */
  readonly puts: Array<{ id: string; content: Map<string, string> }> = [];
  readonly kills: string[] = [];
  private readonly events = new PassThrough();

  add(id: string, name: string, labels: Record<string, string>): void {
    this.containers.set(id, { name, labels });
  }

  /** A line on the event stream, as dockerd sends it. */
  emit(event: { Type: string; Action: string; id: string }): void {
    this.events.write(`${JSON.stringify({ Type: event.Type, Action: event.Action, Actor: { ID: event.id, Attributes: {} }, time: Math.floor(Date.now() / 1000) })}\n`);
  }

  /** The files the target shows through `..data` now (name → content). */
  contentOf(id: string): Map<string, string> {
    const held = this.held.get(id);
    const out = new Map<string, string>();
    const slot = held?.links.get("..data");
    if (!held || !slot) return out;
    for (const [path, content] of held.files) if (path.startsWith(`${slot}/`)) out.set(path.slice(slot.length + 1), content);
    return out;
  }

  asDockerode(): Dockerode {
    const list = async (opts: { all?: boolean; filters?: { status?: string[]; id?: string[]; label?: string[] } } = {}) => {
      const { status, id, label } = opts.filters ?? {};
      if (status && !status.includes("running")) return [];
      if (label?.length) return []; // only compose-labelled lookups filter by label; these containers have none
      return [...this.containers]
        .filter(([cid]) => !id || id.includes(cid))
        .map(([cid, c]) => ({ Id: cid, Names: [`/${c.name}`], Image: "app", ImageID: "sha256:app", Labels: c.labels, State: "running", Mounts: [] }));
    };
    const container = (id: string) => ({
      id,
      inspect: async () => {
        const c = this.containers.get(id);
        if (!c) throw Object.assign(new Error("no such container"), { statusCode: 404 });
        return {
          Id: id,
          Name: `/${c.name}`,
          Image: "sha256:app",
          State: { Running: true, Status: "running", Pid: 0 },
          Config: { Labels: c.labels, Env: [], Image: "app" },
          Mounts: [{ Type: "volume", Name: VOLUME, Source: "", Destination: TARGET, Driver: "local" }],
          HostConfig: {},
        };
      },
      infoArchive: async ({ path }: { path: string }) => {
        const linkTarget = this.resolveLink(id, path);
        if (linkTarget === undefined) throw Object.assign(new Error("not found"), { statusCode: 404 });
        const stat = Buffer.from(JSON.stringify({ name: posix.basename(path), linkTarget })).toString("base64");
        return { headers: { "x-docker-container-path-stat": stat } };
      },
      putArchive: async (tar: Buffer, { path }: { path: string }) => {
        expect(path).toBe(TARGET);
        const copy = Buffer.from(tar); // the agent zeroes its buffer once the call returns
        const held = this.held.get(id) ?? { links: new Map(), files: new Map() };
        this.held.set(id, held);
        await unpack(copy, held);
        this.puts.push({ id, content: this.contentOf(id) });
      },
      kill: async ({ signal }: { signal?: string } = {}) => void this.kills.push(`${id}:${signal}`),
    });
    const fake = {
      info: async () => ({ SecurityOptions: ["name=seccomp,profile=default", "name=userns"], Swarm: { LocalNodeState: "inactive" } }),
      listContainers: list,
      listVolumes: async () => ({ Volumes: [] }),
      getContainer: container,
      getVolume: (name: string) => ({ inspect: async () => ({ Name: name, Driver: "local", Options: { type: "tmpfs", device: "tmpfs" }, Mountpoint: "/dev/shm" }) }),
      getImage: () => ({ inspect: async () => ({ Config: { Labels: {} } }) }),
      getEvents: async () => this.events,
    };
    return fake as unknown as Dockerode;
  }

  /** A symlink's target as dockerd reports it (resolved, absolute); undefined when the path is missing or not a link. */
  private resolveLink(id: string, path: string): string | undefined {
    const held = this.held.get(id);
    if (!held || !path.startsWith(`${TARGET}/`)) return undefined;
    const parts = path.slice(TARGET.length + 1).split("/");
    let dir = "";
    for (const [i, part] of parts.entries()) {
      const rel = dir ? `${dir}/${part}` : part;
      const link = held.links.get(rel);
      if (i === parts.length - 1) return link === undefined ? undefined : posix.join(TARGET, dir, link);
      if (link === undefined) return undefined;
      dir = posix.join(dir, link);
    }
    return undefined;
  }
}

/** A provider instance in process: fingerprints and values from a map the test changes. */
class FakeProvider {
  readonly values = new Map<string, Record<string, string>>();
  fetches = 0;
  fingerprintOf(name: string): string | undefined {
    const value = this.values.get(name);
    return value ? `fp-${JSON.stringify(value)}` : undefined;
  }
  asProcess(name: string): ProviderProcess {
    const fake = {
      getStatus: () => ({ name, type: "file", state: "ready", healthy: true, restarts: 0 }),
      health: async () => ({}),
      stop: async () => {},
      fingerprint: async (refs: SecretRef[]) => refs.map((ref) => ({ ref, fingerprint: this.fingerprintOf(ref.name) })),
      fetch: async (refs: SecretRef[]): Promise<FetchedItem[]> => {
        this.fetches++;
        return refs.map((ref) => {
          const value = this.values.get(ref.name);
          if (!value) return { ref, error: { code: "SECRET_NOT_FOUND", message: `no secret ${ref.name}` } };
          return { ref, fingerprint: this.fingerprintOf(ref.name), value: secretBytes(value) };
        });
      },
    };
    return fake as unknown as ProviderProcess;
  }
}

let dir: string;
let volumesRoot: string;
let agent: Agent;
const docker = new FakeDocker();
const provider = new FakeProvider();
const LABELS = { "dso.reloader": "true", "dso.secrets": "app/db", "dso.update.strategy": "signal" };
const ID1 = "c1".padEnd(64, "0");
const ID2 = "c2".padEnd(64, "0");
const dsn = (pass: string) => `postgres://app:${pass}@db/app`;

async function auditLines(): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(join(dir, "audit.log"), "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** The rotation audit line of `id` with this trigger, once there is one. */
const rotationBy = (id: string, trigger: string) => async () =>
  (await auditLines()).find((e) => e.event === "rotation" && e.trigger === trigger && (e.container as { id?: string } | undefined)?.id === id);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-root-"));
  // The host key and volume records want a tmpfs; /dev/shm is one, so no mount is attempted.
  volumesRoot = await mkdtemp("/dev/shm/dso-root-");
  provider.values.set("app/db", { user: "app", password: "pw-one" });
  docker.add(ID1, "app", LABELS);
  const yaml = [
    "providers:",
    "  files:",
    "    type: file",
    "agent:",
    `  socket: ${join(dir, "dso.sock")}`,
    `  volumes_root: ${volumesRoot}`,
    "  audit:",
    "    enabled: true",
    `    output: ${join(dir, "audit.log")}`,
    "secrets:",
    "  - name: app/db",
    "    provider: files",
    "    templates:",
    "      - file: dsn",
    '        template: "postgres://{{ .user }}:{{ .password }}@db/app"',
    "",
  ].join("\n");
  const { config } = parseConfig(yaml, join(dir, "dso.yaml"), {});
  const connection: DockerConnection = {
    docker: docker.asDockerode(),
    engineVersion: "27.0.0",
    serverApiVersion: "1.47",
    minApiVersion: "1.24",
    negotiatedApiVersion: "1.47",
    host: "fake",
  };
  agent = new Agent(config, {
    configPath: null,
    env: {},
    boundaries: { connectDocker: async () => connection, providerProcess: (name) => provider.asProcess(name) },
  });
  await agent.start();
});

afterAll(async () => {
  await agent?.stop();
  await rm(dir, { recursive: true, force: true });
  await rm(volumesRoot, { recursive: true, force: true });
});

describe("the agent, composed in process against a fake Docker and an in-process provider", () => {
  test("the event stream connects: the labelled container gets its rendered file, no strategy runs", async () => {
    await eventually("the first delivery", () => docker.contentOf(ID1).get("dsn"));
    expect(docker.contentOf(ID1).get("dsn")).toBe(dsn("pw-one"));
    expect(docker.kills).toEqual([]);
    // The first poll's seed wave (trigger poll) is debounced: let it pass, or the webhook's change
    // below would join it and be audited as a poll (the first trigger of a wave names it).
    await eventually("the first poll", () => agent.polls.providers.get("files")?.lastPoll);
    await (await agent.docker()).reconciler.waves.idle();
  });

  test("a provider change noticed by a webhook poll reaches the container with its cause, and the strategy runs once", async () => {
    provider.values.set("app/db", { user: "app", password: "pw-two" });
    const puts = docker.puts.length;
    expect(agent.polls.pollNow({ provider: "files" })).toBe(true);
    const line = await eventually("the rotation audit line", rotationBy(ID1, "webhook"));
    expect(line).toMatchObject({ outcome: "ok", strategy: "signal", secrets: [{ name: "app/db" }] });
    expect(docker.puts.slice(puts).map((p) => [p.id, p.content.get("dsn")])).toEqual([[ID1, dsn("pw-two")]]);
    expect(docker.kills).toEqual([`${ID1}:SIGHUP`]);
  });

  test("`dso rotate` over the control socket fetches again and delivers, trigger rotate", async () => {
    provider.values.set("app/db", { user: "app", password: "pw-three" });
    const reply = await callAgent<{ results: Array<{ container?: string; error?: string }> }>(join(dir, "dso.sock"), "POST", "/v1/rotate", { secret: "app/db" });
    expect(JSON.stringify(reply)).not.toContain("pw-three");
    expect(docker.contentOf(ID1).get("dsn")).toBe(dsn("pw-three"));
    await eventually("the rotate audit line", rotationBy(ID1, "rotate"));
    expect(docker.kills).toEqual([`${ID1}:SIGHUP`, `${ID1}:SIGHUP`]);
  });

  test("a container start event delivers to the new container (no strategy on a first delivery)", async () => {
    docker.add(ID2, "worker", LABELS);
    docker.emit({ Type: "container", Action: "start", id: ID2 });
    await eventually("the delivery to the started container", () => docker.contentOf(ID2).get("dsn"));
    expect(docker.contentOf(ID2).get("dsn")).toBe(dsn("pw-three"));
    expect(docker.kills.filter((k) => k.startsWith(ID2))).toEqual([]);
  });
});
