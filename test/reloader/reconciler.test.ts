/**
 * The reconciler's decisions, in process: a fake Docker (a container list and kill), a fake
 * planner that keeps each target's files and marker in memory, an in-process provider. No
 * dockerd: these pin down when a strategy runs and when it must not.
 */
import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { randomBytes } from "node:crypto";
import { parseConfig } from "../../src/config/index.ts";
import type { DeliveryMode } from "../../src/delivery/types.ts";
import { Reconciler, type ReconcilerDeps } from "../../src/reloader/reconciler.ts";
import type { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { PollScheduler } from "../../src/watcher/poll-scheduler.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { implicitSecretSpec } from "../../src/reloader/selection.ts";
import { SecretSource } from "../../src/secrets/source.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import type { SecretFetcher } from "../../src/secrets/types.ts";
import { VersionMarkers } from "../../src/secrets/version-marker.ts";
import { FetchBatch } from "../../src/secrets/source.ts";
import { KeyedQueue } from "../../src/util/keyed-queue.ts";
import type { SecretRef } from "../../src/rpc/protocol.ts";
import type { FetchedItem } from "../../src/rpc/wire-values.ts";
import { secretBytes } from "../support/secret-bytes.ts";
import { quietLog } from "../support/test-source.ts";

const { config } = parseConfig("providers:\n  p:\n    type: file\n    allow_undeclared: true\n", "dso.yaml", {});

class FakeProvider implements SecretFetcher {
  value = "v1";
  fetches = 0;
  /** Every value buffer handed to the agent, to check that its window ended in zeros. */
  readonly handed: Uint8Array[] = [];
  /** When set, fetches wait for it (a slow provider). */
  gate?: Promise<void>;
  async fetch(refs: SecretRef[]): Promise<FetchedItem[]> {
    this.fetches++;
    await this.gate;
    return refs.map((ref) => {
      const value = secretBytes({ value: this.value });
      this.handed.push(...value.values());
      return { ref, fingerprint: `fp-${this.value}`, version: this.value, value };
    });
  }
}

/** What is "in" each container target: files and marker, kept by the fake planner. */
class FakeTargets {
  readonly held = new Map<string, { marker?: string; content: string }>();
  deliveries = 0;
  /** When set, every delivery fails with this message (a refused write, a container gone). */
  failWith?: string;
  /** When set, deliveries wait for it (a slow write), counted in `waiting`. */
  gate?: Promise<void>;
  waiting = 0;
  async readMarker(id: string, path: string) {
    return { marker: this.held.get(`${id}:${path}`)?.marker, mode: "procfs" as DeliveryMode };
  }
  async deliver(id: string, path: string, files: readonly { content: Uint8Array }[], opts: { marker?: string } = {}) {
    this.deliveries++;
    if (this.gate) {
      this.waiting++;
      await this.gate;
    }
    if (this.failWith) throw new Error(this.failWith);
    this.held.set(`${id}:${path}`, { marker: opts.marker, content: new TextDecoder().decode(files[0]!.content) });
    return { mode: "procfs" as DeliveryMode, targetPath: path, files: ["x"], bytes: 1, durationMs: 0 };
  }
  forget() {}
}

type FakeMount = { Type: string; Name: string; Destination: string; Driver: string };

function fakeDocker(containers: Array<{ id: string; labels: Record<string, string>; mounts?: FakeMount[] }>) {
  const kills: string[] = [];
  const docker = {
    listContainers: async () =>
      containers.map((c) => ({ Id: c.id, Names: [`/${c.id}`], ImageID: "img", Labels: c.labels, State: "running", Mounts: c.mounts ?? [] })),
    getContainer: (id: string) => ({
      kill: async ({ signal }: { signal: string }) => void kills.push(`${id}:${signal}`),
      inspect: async () => ({ Id: id, Config: { Labels: {}, Env: [] }, State: { Running: true } }),
    }),
    getImage: () => ({ inspect: async () => ({ Config: { Labels: {} } }) }),
  } as unknown as Dockerode;
  return { docker, kills };
}

type Log = ConstructorParameters<typeof Reconciler>[0]["log"];

function setup(labels: Record<string, string>, key = randomBytes(32), targets = new FakeTargets(), cache = false, log: Log = quietLog) {
  const store = new SecretStore(cache);
  store.setSpecs(config.secrets);
  const provider = new FakeProvider();
  const source = new SecretSource({ store, provider: () => provider, log: quietLog });
  const { docker, kills } = fakeDocker([{ id: "c1", labels }]);
  const reconciler = new Reconciler({
    docker,
    store,
    source,
    planner: targets,
    markers: new VersionMarkers(key),
    queue: new KeyedQueue(),
    log,
    config: () => config,
  });
  return { reconciler, store, provider, targets, kills, key, source };
}

const zeroed = (buffers: readonly Uint8Array[]) => buffers.length > 0 && buffers.every((b) => b.length > 0 && b.every((x) => x === 0));

const SIGNAL = { "dso.reloader": "true", "dso.secrets": "token", "dso.update.strategy": "signal" };

describe("the reconciler's decisions", () => {
  test("a first delivery runs no strategy; a version change runs it once; an up-to-date pass does nothing", async () => {
    const { reconciler, provider, targets, kills } = setup(SIGNAL);
    await reconciler.reconcileAll();
    expect(targets.held.get("c1:/run/secrets")?.content).toBe("v1");
    expect(kills).toEqual([]);
    const fetchesBefore = provider.fetches;
    await reconciler.reconcileAll();
    expect(provider.fetches).toBe(fetchesBefore);
    expect(targets.deliveries).toBe(1);
    provider.value = "v2";
    await reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    expect(targets.held.get("c1:/run/secrets")?.content).toBe("v2");
    expect(kills).toEqual(["c1:SIGHUP"]);
    await reconciler.reconcileAll();
    expect(kills).toEqual(["c1:SIGHUP"]);
  });

  test("a signal container found current by a new agent has any leftover kept version pruned, once", async () => {
    const targets = new (class extends FakeTargets {
      prunes = 0;
      async prune() {
        this.prunes++;
      }
    })();
    const first = setup(SIGNAL, randomBytes(32), targets);
    await first.reconciler.reconcileAll();
    expect(targets.prunes).toBe(0);
    // The agent that wrote it died in the health window: a new one (same key, same container) starts.
    const second = setup(SIGNAL, first.key, targets);
    await second.reconciler.reconcileAll();
    await second.reconciler.reconcileAll();
    // Once per agent life per target: the new agent's first pass that finds it current.
    expect(targets.prunes).toBe(1);
    expect(second.kills).toEqual([]);
    // Not for containers whose strategy keeps nothing.
    const none = new (class extends FakeTargets {
      prunes = 0;
      async prune() {
        this.prunes++;
      }
    })();
    const other = setup({ ...SIGNAL, "dso.update.strategy": "none" }, randomBytes(32), none);
    await other.reconciler.reconcileAll();
    await other.reconciler.reconcileAll();
    expect(none.prunes).toBe(0);
  });

  test("whoever fetched the new value first, the container's strategy still runs", async () => {
    const { reconciler, store, provider, kills } = setup(SIGNAL);
    await reconciler.reconcileAll();
    provider.value = "v2";
    // Another consumer (a Mount, dso inject) fetched first: the store already knows v2.
    const other = new SecretSource({ store, provider: () => provider, log: quietLog });
    await other.fetch(["token"]);
    await reconciler.reconcileAll();
    expect(kills).toEqual(["c1:SIGHUP"]);
  });

  test("a new agent (same host key, nothing remembered) finds the container current and runs nothing", async () => {
    const first = setup(SIGNAL);
    await first.reconciler.reconcileAll();
    const second = setup(SIGNAL, first.key, first.targets);
    await second.reconciler.reconcileAll();
    expect(second.kills).toEqual([]);
    expect(first.targets.deliveries).toBe(1);
    expect(second.reconciler.list()[0]?.status[0]?.state).toBe("current");
  });

  test("after a reboot (a new key) files are delivered again as a first delivery, without a strategy", async () => {
    const first = setup(SIGNAL);
    await first.reconciler.reconcileAll();
    const second = setup(SIGNAL, randomBytes(32), first.targets);
    await second.reconciler.reconcileAll();
    expect(first.targets.deliveries).toBe(2);
    expect(second.kills).toEqual([]);
  });

  test("a target with more than 150 secrets (one marker token for the set) shows current, and a change runs the strategy once", async () => {
    const names = Array.from({ length: 151 }, (_, i) => `s${i}`);
    const { reconciler, provider, kills } = setup({ ...SIGNAL, "dso.secrets": names.join(",") });
    await reconciler.reconcileAll();
    const states = reconciler.list()[0]!.status;
    expect(states.length).toBe(names.length);
    expect(new Set(states.map((s) => s.state))).toEqual(new Set(["current"]));
    expect(states[0]!.actual).toBe(states[0]!.wanted);
    expect(kills).toEqual([]);
    provider.value = "v2";
    await reconciler.reconcileAll({ only: new Set(["s0"]), refresh: true });
    expect(kills).toEqual(["c1:SIGHUP"]);
    await reconciler.reconcileAll();
    expect(kills).toEqual(["c1:SIGHUP"]);
  });

  test("a container whose labels ask for nothing is left alone", async () => {
    const { reconciler, targets } = setup({ "dso.reloader": "false" });
    expect(await reconciler.reconcileAll()).toEqual([]);
    expect(targets.deliveries).toBe(0);
  });
});

describe("a value's window ends in zeros", () => {
  test("after a delivery, every value buffer the provider handed over is zeroed", async () => {
    const { reconciler, provider, targets } = setup(SIGNAL);
    await reconciler.reconcileAll();
    // Positive control: the bytes were the value while the window was open.
    expect(targets.held.get("c1:/run/secrets")?.content).toBe("v1");
    expect(zeroed(provider.handed)).toBe(true);
  });

  for (const failure of ["the target refused the write (ENOSPC)", "no such container: c1 (gone mid-write)"]) {
    test(`when delivery fails (${failure}), the values are zeroed all the same`, async () => {
      const { reconciler, provider, targets } = setup(SIGNAL);
      targets.failWith = failure;
      const [report] = await reconciler.reconcileAll();
      expect(report?.error).toContain(failure);
      expect(provider.handed.length).toBeGreaterThan(0);
      expect(zeroed(provider.handed)).toBe(true);
    });
  }

  test("after `delivery incomplete` the agent does not also log `delivered secrets to container` (issue 11)", async () => {
    const lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> = [];
    const record = (level: string) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, ...(fields ? { fields } : {}) });
    const log: Log = { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
    const { reconciler, provider, targets } = setup(SIGNAL, randomBytes(32), new FakeTargets(), false, log);
    const delivered = () => lines.filter((l) => l.message === "delivered secrets to container");
    const incomplete = () => lines.filter((l) => l.message === "delivery incomplete");

    targets.failWith = "the target refused the write (ENOSPC)";
    const [first] = await reconciler.reconcileAll();
    expect(first?.error).toContain("ENOSPC");
    expect(incomplete()).toHaveLength(1);
    expect(delivered()).toEqual([]);

    // Positive control: once the target takes the files, the success line is there, naming the secret.
    targets.failWith = undefined;
    await reconciler.reconcileAll();
    expect(delivered()).toEqual([expect.objectContaining({ level: "info", fields: { container: "c1", secrets: "token" } })]);

    // A rotation whose delivery fails: incomplete again, and still no success line for it.
    provider.value = "v2";
    targets.failWith = "no such container: c1 (gone mid-write)";
    await reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    expect(incomplete()).toHaveLength(2);
    expect(delivered()).toHaveLength(1);
  });

  test("a fetch that lands after its wave ended (timeout, abort) is zeroed when it lands", async () => {
    const { reconciler, provider, source } = setup(SIGNAL);
    await reconciler.reconcileAll();
    provider.handed.length = 0;
    let open!: () => void;
    provider.gate = new Promise((resolve) => (open = resolve));
    const batch = new FetchBatch(source, new Set(["token"]));
    const pending = batch.values(["token"]);
    batch.release();
    open();
    const late = await pending;
    expect(late.values.size).toBe(1);
    expect(zeroed(provider.handed)).toBe(true);
  });

  test("with agent.cache the cache keeps its own copy; a rotation zeroes the old one", async () => {
    const { reconciler, provider, store } = setup(SIGNAL, randomBytes(32), new FakeTargets(), true);
    await reconciler.reconcileAll();
    expect(zeroed(provider.handed)).toBe(true);
    const cached = store.cachedValue("token")!.value.get("value")!;
    expect(new TextDecoder().decode(cached)).toBe("v1");
    provider.value = "v2";
    await reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    expect(zeroed([cached])).toBe(true);
    expect(new TextDecoder().decode(store.cachedValue("token")!.value.get("value")!)).toBe("v2");
  });
});

describe("what the agent keeps track of", () => {
  test("dso ls during a wave shows the container's previous secret lines, never a row without them", async () => {
    const { reconciler, provider, targets } = setup(SIGNAL);
    await reconciler.reconcileAll();
    const lines = () => reconciler.list().find((v) => v.id === "c1")?.status.map((l) => [l.name, l.state]);
    expect(lines()).toEqual([["token", "current"]]);
    // A rotation held inside its delivery: the container's observation has begun, its write not ended.
    let open!: () => void;
    targets.gate = new Promise((resolve) => (open = resolve));
    provider.value = "v2";
    const wave = reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    while (targets.waiting === 0) await new Promise((resolve) => setImmediate(resolve));
    expect(lines()).toEqual([["token", "current"]]);
    open();
    await wave;
    expect(lines()).toEqual([["token", "current"]]);
    expect(reconciler.list().find((v) => v.id === "c1")?.status[0]?.version).toBe("v2");
  });

  test("a secret named only by a failed Mount or a removed label is forgotten by the next full pass", async () => {
    const { reconciler, store } = setup({ "dso.reloader": "true", "dso.secrets": "token" });
    store.ensure(implicitSecretSpec("only-a-failed-mount", config)!);
    store.recordError("only-a-failed-mount", "not found", new Date());
    await reconciler.reconcileAll({ full: true });
    expect(store.get("only-a-failed-mount")).toBeUndefined();
    expect(store.get("token")).toBeDefined();
  });
});

/** A DSO volume as the reconciler sees it through the driver: its options, files marker, and what each container was told. */
class FakeVolume {
  filesMarker?: string;
  readonly seen = new Map<string, string>();
  constructor(
    private readonly markers: VersionMarkers,
    private readonly opts: Record<string, string>,
    private readonly mounted = true,
  ) {}
  optionsOf = (volume: string) => (volume === "vol" ? this.opts : undefined);
  refresh = async (_volume: string, fetch: (names: string[]) => Promise<{ values: ReadonlyMap<string, { fingerprint: string }> }>) => {
    if (!this.mounted) return undefined;
    const names = this.opts.secrets!.split(",");
    const { values } = await fetch(names);
    if (values.size === names.length) this.filesMarker = this.markers.marker(Object.fromEntries(names.map((n) => [n, values.get(n)!.fingerprint])));
    return this.filesMarker;
  };
  observe = async () => ({ mounted: this.mounted, opts: this.opts, filesMarker: this.filesMarker, seen: this.seen });
  markSeen = async (_volume: string, id: string, marker: string) => void this.seen.set(id, marker);
  syncUsers = async () => {};
}

const VOLUME_MOUNT = [{ Type: "volume", Name: "vol", Destination: "/run/secrets", Driver: "dso" }];

function setupVolumeOnly(yaml: string, opts: Record<string, string>, extra: { mounted?: boolean; pendingReason?: (secret: string) => string; store?: SecretStore } = {}) {
  const { config: cfg } = parseConfig(yaml, "dso.yaml", {});
  const store = extra.store ?? new SecretStore(false);
  store.setSpecs(cfg.secrets);
  const provider = new FakeProvider();
  const source = new SecretSource({ store, provider: () => provider, log: quietLog });
  const markers = new VersionMarkers(randomBytes(32));
  const volume = new FakeVolume(markers, opts, extra.mounted ?? true);
  const { docker, kills } = fakeDocker([{ id: "c1", labels: {}, mounts: VOLUME_MOUNT }]);
  const reconciler = new Reconciler({
    docker,
    store,
    source,
    planner: new FakeTargets(),
    markers,
    volumes: volume as unknown as ReconcilerDeps["volumes"],
    queue: new KeyedQueue(),
    log: quietLog,
    config: () => cfg,
    ...(extra.pendingReason ? { pendingReason: extra.pendingReason } : {}),
  });
  return { reconciler, provider, kills, volume, store };
}

describe("containers served only through a DSO volume", () => {
  test("with no strategy= option, the strategy dso.yaml names for the secret runs on a change, once", async () => {
    const yaml = "providers:\n  p:\n    type: file\n    allow_undeclared: true\nsecrets:\n  - name: token\n    provider: p\n    rotation:\n      enabled: true\n      strategy: signal\n      signal: SIGUSR1\n";
    const { reconciler, provider, kills, volume } = setupVolumeOnly(yaml, { secrets: "token" });
    await reconciler.reconcileAll();
    const [view] = reconciler.list();
    expect(view?.strategy).toBe("signal");
    expect(view?.status.map((s) => [s.name, s.mode, s.state])).toEqual([["token", "plugin", "current"]]);
    expect(volume.seen.get("c1")).toBe(volume.filesMarker!);
    expect(kills).toEqual([]);
    provider.value = "v2";
    await reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    expect(kills).toEqual(["c1:SIGUSR1"]);
    await reconciler.reconcileAll();
    expect(kills).toEqual(["c1:SIGUSR1"]);
  });

  test("without one in dso.yaml either, files are updated with strategy none", async () => {
    const { reconciler, provider, kills } = setupVolumeOnly("providers:\n  p:\n    type: file\n    allow_undeclared: true\n", { secrets: "token" });
    await reconciler.reconcileAll();
    expect(reconciler.list()[0]?.strategy).toBe("none");
    provider.value = "v2";
    const [report] = await reconciler.reconcileAll({ only: new Set(["token"]), refresh: true });
    expect(report?.delivered).toEqual(["token"]);
    expect(kills).toEqual([]);
  });

  test("a secret its provider has not polled yet shows `pending: first poll in 4m` in dso ls", async () => {
    const yaml = "providers:\n  p:\n    type: file\n    allow_undeclared: true\n";
    const { config: cfg } = parseConfig(yaml, "dso.yaml", {});
    const store = new SecretStore(false);
    const providerProcess = { fingerprint: async () => [], stop: async () => {}, getStatus: () => ({}) } as unknown as ProviderProcess;
    const clock = new ManualClock();
    const polls = new PollScheduler({ store, log: quietLog, intervalMs: () => 240_000, startProcess: () => providerProcess, pollFinished: () => {}, onChanged: () => {}, clock });
    try {
      // The provider's first poll ran before any container named the secret: the next is ~4m away.
      polls.sync(cfg.providers);
      await clock.advance(0);
      expect(polls.providers.get("p")?.lastPoll).toBeDefined();
      const { reconciler } = setupVolumeOnly(yaml, { secrets: "later" }, { mounted: false, store, pendingReason: (s) => polls.pendingReason(s) });
      await reconciler.reconcileAll();
      expect(reconciler.list()[0]?.status.map((s) => [s.name, s.state])).toEqual([["later", "pending: first poll in 4m"]]);
    } finally {
      polls.halt();
    }
  });
});
