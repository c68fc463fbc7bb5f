import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { strategyByName, type StrategyContext } from "../../src/reloader/strategies/index.ts";
import { publishesFixedHostPorts } from "../../src/reloader/strategies/rolling.ts";
import { ensureDocker } from "../support/docker-daemon.ts";
import { BUSYBOX_IMAGE, ensureTestImages } from "../support/test-images.ts";

let docker: Dockerode;
const created: string[] = [];
const quiet = { info() {}, warn() {} };

beforeAll(async () => {
  docker = (await ensureDocker()).docker;
  await ensureTestImages(docker);
});
afterAll(async () => {
  for (const id of created) await docker.getContainer(id).remove({ force: true }).catch(() => {});
});

async function run(name: string, script: string, extra: Partial<Dockerode.ContainerCreateOptions> = {}) {
  const c = await docker.createContainer({
    name: `${name}-${process.pid}`,
    Image: BUSYBOX_IMAGE,
    Cmd: ["sh", "-c", script],
    Labels: { "dso.test": "strategies" },
    HostConfig: { NetworkMode: "none" },
    ...extra,
  });
  created.push(c.id);
  await c.start();
  return c;
}

function context(id: string, name: string, over: Partial<StrategyContext> = {}): StrategyContext & { delivered: string[] } {
  const delivered: string[] = [];
  return {
    docker,
    containerId: id,
    containerName: name,
    signal: "SIGHUP",
    healthCheckTimeoutMs: 8_000,
    env: {},
    labels: {},
    secretPaths: [],
    log: quiet,
    abort: new AbortController().signal,
    deliver: async (target) => void delivered.push(target),
    restorePrevious: async () => ({ restored: [], notRestored: ["/run/secrets: nothing kept in this test"] }),
    delivered,
    ...over,
  };
}

async function logsOf(c: Dockerode.Container): Promise<string> {
  const buf = (await c.logs({ stdout: true, stderr: true })) as unknown as Buffer;
  return buf.toString("latin1");
}

/** PID 1 ignores SIGTERM without a handler, and docker would wait 10 s before SIGKILL. */
const IDLE = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
const HEALTH = { Interval: 300_000_000, Timeout: 1_000_000_000, Retries: 1, StartPeriod: 0 };

describe("rotation strategies on a real daemon", () => {
  test("signal sends the configured signal to the container", async () => {
    const c = await run("sig", 'trap "echo got-hup" HUP; echo ready; while true; do sleep 0.1; done');
    await Bun.sleep(300);
    const result = await strategyByName("signal").apply(context(c.id, "sig"));
    expect(result).toMatchObject({ strategy: "signal", action: "signalled", containerId: c.id });
    await Bun.sleep(400);
    expect(await logsOf(c)).toContain("got-hup");
  });

  test("signal escalates to restart when the container turns unhealthy", async () => {
    const c = await run("sigunhealthy", `touch /tmp/ok; trap "rm -f /tmp/ok" HUP; ${IDLE}`, {
      Healthcheck: { Test: ["CMD", "test", "-f", "/tmp/ok"], ...HEALTH },
    });
    const before = (await c.inspect()).State.StartedAt;
    await Bun.sleep(800);
    const ctx = context(c.id, "sigunhealthy");
    const result = await strategyByName("signal").apply(ctx);
    expect(result.action).toBe("escalated-to-restart");
    expect((await c.inspect()).State.StartedAt).not.toBe(before);
    expect(ctx.delivered).toEqual([c.id]);
  });

  test("restart restarts in place and delivers again", async () => {
    const c = await run("restart", IDLE);
    const before = (await c.inspect()).State.StartedAt;
    const ctx = context(c.id, "restart");
    const result = await strategyByName("restart").apply(ctx);
    expect(result).toMatchObject({ action: "restarted", containerId: c.id });
    const after = await c.inspect();
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).not.toBe(before);
    expect(ctx.delivered).toEqual([c.id]);
  });

  test("rolling replaces the container: same name, labels and config, new id; old one removed", async () => {
    const c = await run("rolling", IDLE, { Env: ["KEEP=1"] });
    const name = `rolling-${process.pid}`;
    const ctx = context(c.id, name, { env: { NEW_VAR: "x" } });
    const result = await strategyByName("rolling").apply(ctx);
    expect(result.action).toBe("replaced");
    expect(result.containerId).not.toBe(c.id);
    created.push(result.containerId);
    const next = await docker.getContainer(result.containerId).inspect();
    expect(next.Name).toBe(`/${name}`);
    expect(next.Config.Labels["dso.test"]).toBe("strategies");
    expect(next.Config.Env).toContain("KEEP=1");
    expect(next.Config.Env).toContain("NEW_VAR=x");
    expect(next.HostConfig.NetworkMode).toBe("none");
    expect(ctx.delivered).toEqual([result.containerId]);
    await expect(c.inspect()).rejects.toThrow();
  });

  test("rolling rolls back: the old container keeps running when the replacement never becomes healthy", async () => {
    const c = await run("rollfail", `[ -z "$FAIL" ] && touch /tmp/ok; ${IDLE}`, {
      Healthcheck: { Test: ["CMD", "test", "-f", "/tmp/ok"], ...HEALTH },
    });
    const ctx = context(c.id, `rollfail-${process.pid}`, { env: { FAIL: "1" }, healthCheckTimeoutMs: 3_000 });
    await expect(strategyByName("rolling").apply(ctx)).rejects.toThrow("rollback: replacement unhealthy");
    expect((await c.inspect()).State.Running).toBe(true);
    const leftovers = await docker.listContainers({ all: true, filters: { name: [`rollfail-${process.pid}-dso-next`] } });
    expect(leftovers).toEqual([]);
  });

  test("rolling rolls back with the reason when the replacement exits: its exit code, not only (exited)", async () => {
    const c = await run("rollexit", `[ -n "$FAIL" ] && exit 3; ${IDLE}`);
    const ctx = context(c.id, `rollexit-${process.pid}`, { env: { FAIL: "1" }, healthCheckTimeoutMs: 3_000 });
    await expect(strategyByName("rolling").apply(ctx)).rejects.toThrow("rollback: replacement exited with code 3; the old container keeps running on its previous files");
    expect((await c.inspect()).State.Running).toBe(true);
  });

  test("rolling on the host's network: a replacement that cannot bind the old one's port rolls back, and the reason says so", async () => {
    const port = 20_000 + (process.pid % 20_000);
    const c = await run("rollport", `httpd -f -p 127.0.0.1:${port} -h /tmp`, { HostConfig: { NetworkMode: "host" } });
    await Bun.sleep(300);
    const ctx = context(c.id, `rollport-${process.pid}`, { healthCheckTimeoutMs: 4_000 });
    const failure = await strategyByName("rolling").apply(ctx).then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(failure).toContain("rollback: replacement exited with code 1");
    expect(failure).toContain("it shares the host's network: does it bind a port the old container holds?");
    expect((await c.inspect()).State.Running).toBe(true);
  });

  test("rolling with a writable volume: restarted in place; the owner's shared-storage label runs both on the same volume, the image's does not", async () => {
    const image = `dso-test/shared-label:${process.pid}`;
    const base = await docker.createContainer({ Image: BUSYBOX_IMAGE, Cmd: ["true"], HostConfig: { NetworkMode: "none" } });
    await base.commit({ repo: image.split(":")[0], tag: image.split(":")[1], changes: ["VOLUME /data", "LABEL dso.update.shared-storage=true"] } as Record<string, unknown>);
    await base.remove({ force: true });
    try {
      const fromImage = await run("rollimg", `echo row > /data/t; ${IDLE}`, { Image: image });
      const owned = await run("rollown", `test -f /data/t || echo row > /data/t; ${IDLE}`, { Volumes: { "/data": {} }, Labels: { "dso.test": "strategies", "dso.update.shared-storage": "true" } });
      const inPlace = await strategyByName("rolling").apply(context(fromImage.id, `rollimg-${process.pid}`));
      expect(inPlace).toMatchObject({ action: "restarted", containerId: fromImage.id });
      expect(inPlace.detail).toContain("anonymous volume");
      const volumeOf = async (id: string) => (await docker.getContainer(id).inspect()).Mounts.find((m) => m.Destination === "/data")?.Name;
      const before = await volumeOf(owned.id);
      const replaced = await strategyByName("rolling").apply(context(owned.id, `rollown-${process.pid}`));
      created.push(replaced.containerId);
      expect(replaced.action).toBe("replaced");
      expect(replaced.containerId).not.toBe(owned.id);
      expect(await volumeOf(replaced.containerId)).toBe(before);
    } finally {
      for (const name of [`rollimg-${process.pid}`, `rollown-${process.pid}`]) await docker.getContainer(name).remove({ force: true, v: true }).catch(() => {});
      await docker.getImage(image).remove({ force: true }).catch(() => {});
    }
  });

  test("none leaves the container alone", async () => {
    const c = await run("none", IDLE);
    const before = (await c.inspect()).State.StartedAt;
    const result = await strategyByName("none").apply(context(c.id, "none"));
    expect(result.action).toBe("files-only");
    expect((await c.inspect()).State.StartedAt).toBe(before);
  });

  test("fixed host ports are detected (rolling falls back to restart for them)", () => {
    const info = (bindings: unknown) => ({ HostConfig: { PortBindings: bindings } }) as unknown as Dockerode.ContainerInspectInfo;
    expect(publishesFixedHostPorts(info({ "80/tcp": [{ HostIp: "", HostPort: "8080" }] }))).toBe(true);
    expect(publishesFixedHostPorts(info({ "80/tcp": [{ HostIp: "", HostPort: "" }] }))).toBe(false);
    expect(publishesFixedHostPorts(info({}))).toBe(false);
  });
});
