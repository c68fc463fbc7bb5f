import { legacyItems } from "../support/secret-bytes.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backoffDelay, ProviderProcess, BACKOFF_MAX_MS } from "../../src/rpc/supervisor.ts";

const FIXTURE = join(import.meta.dir, "fixtures/misbehaving-provider.ts");
const misbehaving = (mode: string) => [process.execPath, FIXTURE, mode];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-rpc-"));
  await writeFile(join(dir, "db"), '{"username":"app","password":"planted-Secret-4711"}');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function fileProvider(extra: Partial<ConstructorParameters<typeof ProviderProcess>[0]> = {}) {
  return new ProviderProcess({ configure: { name: "local", type: "file", config: { path: dir } }, ...extra });
}

/** The pids of this test process's children that run `provider <type>`. */
function providerChildren(): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(process.pid)]).stdout.toString().trim();
  return (out ? out.split("\n").map(Number) : []).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("provider");
    } catch {
      return false;
    }
  });
}

async function until(what: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}

describe("provider supervisor with the real `dso provider file` process", () => {
  test("when asked (change events) a spare fetch child waits (no value in it): it serves the next fetch and exits, another replaces it", async () => {
    const p = fileProvider();
    try {
      await p.health();
      p.keepSpareFetchReady();
      const main = p.getStatus().pid!;
      await until(() => providerChildren().length === 2);
      const spare = providerChildren().find((pid) => pid !== main)!;
      const [item] = legacyItems(await p.fetch([{ name: "db" }]));
      expect(item?.value?.data).toMatchObject({ username: "app" });
      // The spare was the fetch child: it exited with the fetch; a new one starts after the delay.
      await until(() => !providerChildren().includes(spare));
      await until(() => providerChildren().length === 2);
      expect(providerChildren()).not.toContain(spare);
    } finally {
      await p.stop();
    }
    expect(providerChildren()).toEqual([]);
  }, 30_000);

  test("unless asked no fetch child waits", async () => {
    const p = fileProvider();
    try {
      await p.health();
      await Bun.sleep(300);
      expect(providerChildren()).toEqual([p.getStatus().pid!]);
    } finally {
      await p.stop();
    }
  });

  test("handshake, fingerprint without value, fetch with value", async () => {
    const p = fileProvider();
    try {
      const [fp] = await p.fingerprint([{ name: "db" }]);
      expect(fp?.fingerprint).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
      const [item] = legacyItems(await p.fetch([{ name: "db" }]));
      expect(item?.value?.data).toEqual({ username: "app", password: "planted-Secret-4711" });
      expect(item?.fingerprint).toBe(fp!.fingerprint!);
      expect(p.getStatus()).toMatchObject({ state: "ready", healthy: true });
    } finally {
      await p.stop();
    }
  });

  test("a missing secret is an in-band error for that ref only", async () => {
    const p = fileProvider();
    try {
      const items = legacyItems(await p.fetch([{ name: "db" }, { name: "nope" }]));
      expect(items[0]?.value).toBeDefined();
      expect(items[1]?.error?.code).toBe("SECRET_NOT_FOUND");
    } finally {
      await p.stop();
    }
  });

  test("a bad provider config fails configure with the field named", async () => {
    const p = new ProviderProcess({ configure: { name: "local", type: "file", config: { path: "relative/dir" } } });
    try {
      await expect(p.fingerprint([{ name: "db" }])).rejects.toThrow("providers.local.config.path: must be an absolute path");
    } finally {
      await p.stop();
    }
  });

  test("SIGKILL mid-call fails the call in flight and the next call restarts the provider", async () => {
    const p = new ProviderProcess({
      configure: { name: "local", type: "file", config: { path: dir } },
      command: misbehaving("hang"),
      callTimeoutMs: 20_000,
    });
    const call = p.fetch([{ name: "db" }]);
    // Values are fetched by a short-lived process of their own: that is the one in the call.
    // Mid-call: after its handshake (a loaded machine may take longer than 300 ms to get there).
    for (let i = 0; i < 100 && p.getStatus().fetchPid === undefined; i++) await Bun.sleep(50);
    await Bun.sleep(300);
    expect(p.getStatus().fetchPid).toBeNumber();
    process.kill(p.getStatus().fetchPid!, "SIGKILL");
    await expect(call).rejects.toMatchObject({ code: "PROVIDER_UNAVAILABLE" });
    expect(p.getStatus()).toMatchObject({ healthy: false, restarts: 1 });
    await p.stop();

    // The real provider recovers after a crash of its own process.
    const real = fileProvider();
    await real.fingerprint([{ name: "db" }]);
    process.kill(real.getStatus().pid!, "SIGKILL");
    await Bun.sleep(200);
    const [again] = await real.fingerprint([{ name: "db" }]);
    expect(again?.fingerprint).toMatch(/^hmac-sha256:/);
    expect(real.getStatus().restarts).toBe(1);
    await real.stop();
  });

  test("a hung provider times out with PROVIDER_TIMEOUT and is killed", async () => {
    const p = new ProviderProcess({
      configure: { name: "slow", type: "file", config: {} },
      command: misbehaving("hang"),
      callTimeoutMs: 400,
    });
    await expect(p.fingerprint([{ name: "x" }])).rejects.toMatchObject({ code: "PROVIDER_TIMEOUT" });
    expect(p.getStatus().pid).toBeUndefined();
    // The killed child counts as a restart (dso_provider_restarts_total), once it has exited.
    for (let i = 0; i < 50 && p.getStatus().restarts === 0; i++) await Bun.sleep(20);
    expect(p.getStatus().restarts).toBe(1);
    await p.stop();
  });

  test("garbage on the pipe is a protocol error, not a crash of the agent", async () => {
    const p = new ProviderProcess({ configure: { name: "g", type: "file", config: {} }, command: misbehaving("garbage") });
    await expect(p.fingerprint([{ name: "x" }])).rejects.toMatchObject({ code: "RPC_PROTOCOL" });
    expect(p.getStatus().healthy).toBe(false);
    await p.stop();
  });

  test("an oversize frame is refused without buffering it", async () => {
    const p = new ProviderProcess({ configure: { name: "o", type: "file", config: {} }, command: misbehaving("oversize") });
    await expect(p.fetch([{ name: "x" }])).rejects.toThrow(/larger than/);
    await p.stop();
  });

  test("a protocol version mismatch is a clear error, not a hang", async () => {
    const p = new ProviderProcess({ configure: { name: "old", type: "file", config: {} }, command: misbehaving("old") });
    await expect(p.health()).rejects.toThrow("speaks protocol 1, this agent speaks 2");
    await p.stop();
  });

  test("a provider that never says hello times out at start", async () => {
    const p = new ProviderProcess({
      configure: { name: "mute", type: "file", config: {} },
      command: misbehaving("silent"),
      startTimeoutMs: 300,
    });
    await expect(p.health()).rejects.toMatchObject({ code: "PROVIDER_TIMEOUT" });
    await p.stop();
  });

  test("a crash is followed by a restart only after backoff", async () => {
    const p = new ProviderProcess({ configure: { name: "c", type: "file", config: {} }, command: misbehaving("crash") });
    await expect(p.health()).rejects.toMatchObject({ code: "PROVIDER_UNAVAILABLE" });
    const t0 = Date.now();
    await expect(p.health()).rejects.toMatchObject({ code: "PROVIDER_UNAVAILABLE" });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350); // first backoff is 500 ms ± 20 %
    await p.stop();
  });

  test("backoff grows exponentially with jitter and is capped", () => {
    expect(backoffDelay(1, () => 0.5)).toBe(500);
    expect(backoffDelay(3, () => 0.5)).toBe(2000);
    expect(backoffDelay(30, () => 1)).toBe(Math.round(BACKOFF_MAX_MS * 1.2));
    expect(backoffDelay(2, () => 0)).toBe(800);
  });
});

describe("the provider's pipes", () => {
  test("a provider that prints to stdout does not break the stream, and its non-JSON stderr is re-logged", async () => {
    const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
    const record = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
    const fingerprintKey = "5e".repeat(32);
    const p = new ProviderProcess({
      configure: { name: "noisy", type: "file", config: { path: dir }, fingerprintKey },
      command: [process.execPath, join(import.meta.dir, "fixtures/noisy-provider.ts")],
      log: { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") },
    });
    try {
      const [item] = legacyItems(await p.fetch([{ name: "db" }]));
      expect(item?.value?.data).toEqual({ username: "app", password: "planted-Secret-4711" });
      const [again] = legacyItems(await p.fetch([{ name: "db" }]));
      expect(again?.value).toBeDefined();
      expect(p.getStatus()).toMatchObject({ healthy: true, restarts: 0 });
      await Bun.sleep(100);
      const stderr = lines.filter((l) => l.msg === "provider wrote to stderr").map((l) => String(l.fields?.line));
      expect(stderr).toContain("stray console.log from a library");
      expect(stderr).toContain("stray stdout write");
      expect(stderr.some((l) => l.includes("console.dir"))).toBe(true);
      expect(stderr.some((l) => l.includes("console.table"))).toBe(true);
      expect(stderr.some((l) => l.includes("stray console.count"))).toBe(true);
      expect(stderr).toContain("stray console.group");
      expect(stderr).toContain("stray Bun.write to Bun.stdout");
      expect(stderr).toContain("stray writeSync to fd 1");
      expect(stderr).toContain("Error: something broke");
      // The fingerprint key is redacted even where provider code logs its configure params.
      expect(lines.some((l) => l.msg.startsWith("careless: configured with"))).toBe(true);
      expect(JSON.stringify(lines)).not.toContain(fingerprintKey);
    } finally {
      await p.stop();
    }
  });
});
