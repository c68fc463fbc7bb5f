import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectDocker, OUR_MAX_API } from "../../src/docker/client.ts";
import { DsoError } from "../../src/errors.ts";
import { ensureDocker } from "../support/docker-daemon.ts";

const dirs: string[] = [];
const cleanups: Array<() => void> = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "dso-connect-"));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function connectError(run: () => Promise<unknown>): Promise<DsoError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof DsoError) return error;
    throw error;
  }
  throw new Error("expected connectDocker to fail");
}

/** A fake daemon on a unix socket that answers /version with `version` and records request paths. */
function fakeDaemon(version: Record<string, string>): { host: string; paths: string[] } {
  const socketPath = join(tempDir(), "fake.sock");
  const paths: string[] = [];
  const server = Bun.serve({
    unix: socketPath,
    development: false,
    fetch(req) {
      // On a unix socket req.url may be a bare path; give URL a base.
      const path = new URL(req.url, "http://localhost").pathname;
      paths.push(path);
      if (path.endsWith("/version")) return Response.json(version);
      if (path.endsWith("/_ping")) return new Response("OK");
      return new Response("not found", { status: 404 });
    },
  });
  cleanups.push(() => server.stop(true));
  return { host: `unix://${socketPath}`, paths };
}

/** Accepts connections and never answers. */
async function silentSocket(): Promise<string> {
  const socketPath = join(tempDir(), "silent.sock");
  const server: Server = createServer(() => {});
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(() => server.close());
  return socketPath;
}

describe("connectDocker against the test daemon", () => {
  test("reports Docker 20.10 and pins API 1.41 on the client", async () => {
    const { host } = await ensureDocker();
    const conn = await connectDocker({ env: { DOCKER_HOST: host } });
    expect(conn.engineVersion).toStartWith("20.10.");
    expect(conn.serverApiVersion).toBe("1.41");
    expect(conn.negotiatedApiVersion).toBe("1.41");
    expect(conn.host).toBe(host);
    expect((conn.docker.modem as unknown as { version?: string }).version).toBe("v1.41");
    expect(await conn.docker.ping()).toBeDefined();
  });
});

describe("connectDocker version pinning", () => {
  test("sends every later request under /v<negotiated>/ when the daemon is newer than us", async () => {
    const fake = fakeDaemon({ Version: "28.0.0", ApiVersion: "1.48", MinAPIVersion: "1.24" });
    const conn = await connectDocker({ env: { DOCKER_HOST: fake.host } });
    expect(conn.negotiatedApiVersion).toBe(OUR_MAX_API);
    await conn.docker.ping();
    expect(fake.paths).toEqual(["/version", `/v${OUR_MAX_API}/_ping`]);
  });

  test("refuses a daemon that no longer accepts any version we speak", async () => {
    const fake = fakeDaemon({ Version: "99.0.0", ApiVersion: "1.60", MinAPIVersion: "1.50" });
    const error = await connectError(() => connectDocker({ env: { DOCKER_HOST: fake.host } }));
    expect(error.code).toBe("DOCKER_API");
    expect(error.message).toContain("1.50");
  });

  test("refuses a server whose /version is not Docker's", async () => {
    const fake = fakeDaemon({ hello: "world" });
    const error = await connectError(() => connectDocker({ env: { DOCKER_HOST: fake.host } }));
    expect(error.code).toBe("DOCKER_API");
    expect(error.message).toContain("is it a Docker daemon?");
  });
});

describe("connectDocker when Docker is not there", () => {
  test("a socket path with nothing listening gives DOCKER_UNREACHABLE in one line", async () => {
    const socketPath = join(tempDir(), "docker.sock");
    const error = await connectError(() => connectDocker({ env: { DOCKER_HOST: `unix://${socketPath}` } }));
    expect(error.code).toBe("DOCKER_UNREACHABLE");
    expect(error.message).toBe(`cannot reach Docker at unix://${socketPath}: no socket there`);
    expect(error.hint).toBe("is dockerd running? set DOCKER_HOST");
  });

  test("a path that is not a socket is unreachable too", async () => {
    const path = join(tempDir(), "plain-file");
    writeFileSync(path, "");
    const error = await connectError(() => connectDocker({ env: { DOCKER_HOST: `unix://${path}` } }));
    expect(error.code).toBe("DOCKER_UNREACHABLE");
    expect(error.message).toStartWith(`cannot reach Docker at unix://${path}: `);
    expect(error.message).not.toContain("\n");
  });

  test("a daemon that never answers times out with the limit in the message", async () => {
    const socketPath = await silentSocket();
    const started = performance.now();
    const error = await connectError(() => connectDocker({ env: { DOCKER_HOST: `unix://${socketPath}` }, timeoutMs: 200 }));
    expect(error.code).toBe("DOCKER_UNREACHABLE");
    expect(error.message).toEndWith("no answer within 0.2 s");
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  test("the caller's signal cancels the connect", async () => {
    const socketPath = await silentSocket();
    const error = await connectError(() =>
      connectDocker({ env: { DOCKER_HOST: `unix://${socketPath}` }, signal: AbortSignal.timeout(100) }),
    );
    expect(error.code).toBe("DOCKER_UNREACHABLE");
    expect(error.message).toEndWith(": cancelled");
  });
});
