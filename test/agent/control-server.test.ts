import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { type ControlServer, startControlServer } from "../../src/agent/control-server.ts";

const quiet = { debug: () => {}, warn: () => {} };
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const hasSetpriv = Bun.which("setpriv") !== null && Bun.which("curl") !== null;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-control-"));
  // Traversable, so a test can connect as another uid when the socket's mode lets it.
  await chmod(dir, 0o755);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Seen {
  path: string;
  status: number;
  callerUid: number | undefined;
}

function serve(name: string, extra: { group?: string } = {}): { server: ControlServer; socketPath: string; seen: Seen[] } {
  const socketPath = join(dir, name);
  const seen: Seen[] = [];
  const server = startControlServer({
    socketPath,
    ...extra,
    routes: [
      { method: "GET", path: "/v1/status", access: "read", handle: async () => ({ ok: true }) },
      { method: "POST", path: "/v1/rotate", access: "trigger", body: v.object({ secret: v.string() }), handle: async (body) => ({ rotated: (body as { secret: string }).secret }) },
      { method: "GET", path: "/v1/big", access: "read", handle: async () => ({ filler: "x".repeat(3 * 1024 * 1024) }) },
    ],
    onRequest: (info, callerUid) => seen.push({ path: info.path, status: info.status, callerUid }),
    log: quiet,
  });
  return { server, socketPath, seen };
}

function call(socketPath: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://dso${path}`, {
    unix: socketPath,
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  } as RequestInit);
}

describe("control socket: caller uid from the socket peer", () => {
  test("a changing call reports the caller's uid as the kernel saw it; a header claiming another uid changes nothing", async () => {
    const { server, socketPath, seen } = serve("a.sock");
    try {
      const reply = await call(socketPath, "/v1/rotate", { secret: "app/db" }, { "x-dso-caller-uid": "4242", "x-forwarded-for": "4242" });
      expect(await reply.json()).toEqual({ rotated: "app/db" });
      expect((await call(socketPath, "/v1/status")).status).toBe(200);
      expect((await call(socketPath, "/v1/rotate", { nope: 1 })).status).toBe(400);
      expect(seen).toEqual([
        { path: "/v1/rotate", status: 200, callerUid: process.getuid!() },
        { path: "/v1/status", status: 200, callerUid: process.getuid!() },
        { path: "/v1/rotate", status: 400, callerUid: process.getuid!() },
      ]);
    } finally {
      await server.stop(true);
    }
  });

  test("the public socket keeps mode 0600; the private sockets sit in a new 0700 directory that stop removes", async () => {
    // One a killed agent left (ours: removed), and one planted under the old fixed name.
    await mkdir(join(dir, ".b.sock.callers-stale"), { mode: 0o700 });
    const { server, socketPath } = serve("b.sock");
    const created = (await readdir(dir)).filter((name) => name.startsWith(".b.sock.callers"));
    expect(created).toHaveLength(1);
    expect(created[0]).toMatch(/^\.b\.sock\.callers-\w{6}$/);
    expect(created[0]).not.toBe(".b.sock.callers-stale");
    const privateDir = join(dir, created[0]!);
    try {
      expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
      expect((await call(socketPath, "/v1/status")).status).toBe(200);
      expect((await stat(privateDir)).mode & 0o777).toBe(0o700);
      expect(await readdir(privateDir)).toEqual([`uid-${process.getuid!()}.sock`]);
    } finally {
      await server.stop(true);
    }
    expect(existsSync(privateDir)).toBe(false);
  });

  test("bytes pass the front unchanged: a 3 MB reply, many requests on one kept-alive connection, several at once", async () => {
    const { server, socketPath, seen } = serve("c.sock");
    try {
      const big = (await (await call(socketPath, "/v1/big")).json()) as { filler: string };
      expect(big.filler.length).toBe(3 * 1024 * 1024);
      for (let i = 0; i < 20; i++) expect(await (await call(socketPath, "/v1/rotate", { secret: `s${i}` })).json()).toEqual({ rotated: `s${i}` });
      const parallel = await Promise.all(Array.from({ length: 20 }, (_, i) => call(socketPath, "/v1/rotate", { secret: `p${i}` }).then((r) => r.json())));
      expect(parallel).toEqual(Array.from({ length: 20 }, (_, i) => ({ rotated: `p${i}` })));
      expect(seen.filter((s) => s.path === "/v1/rotate")).toHaveLength(40);
    } finally {
      await server.stop(true);
    }
  });

  test.skipIf(!isRoot || !hasSetpriv)("another user allowed by the socket's group is recorded with its own uid; one outside it is refused by the kernel", async () => {
    const { server, socketPath, seen } = serve("d.sock", { group: String(NOBODY) });
    const asNobody = (groups: string) =>
      Bun.spawn(["setpriv", "--reuid", String(NOBODY), "--regid", String(NOBODY), groups, "curl", "-sS", "--unix-socket", socketPath, "-X", "POST", "-d", '{"secret":"app/db"}', "http://dso/v1/rotate"], {
        stderr: "pipe",
      });
    try {
      expect((await stat(socketPath)).mode & 0o777).toBe(0o660);
      const allowed = asNobody("--clear-groups");
      expect(await new Response(allowed.stdout).text()).toBe('{"rotated":"app/db"}');
      expect(seen).toEqual([{ path: "/v1/rotate", status: 200, callerUid: NOBODY }]);
    } finally {
      await server.stop(true);
    }
    const { server: strict, socketPath: strictPath, seen: strictSeen } = serve("e.sock");
    try {
      const refused = Bun.spawn(["setpriv", "--reuid", String(NOBODY), "--regid", String(NOBODY), "--clear-groups", "curl", "-sS", "--unix-socket", strictPath, "http://dso/v1/status"], { stderr: "pipe" });
      // curl exit 7: could not connect (connect(2) got EACCES on the 0600 socket).
      expect(await refused.exited).toBe(7);
      expect(strictSeen).toEqual([]);
    } finally {
      await strict.stop(true);
    }
  });
});
