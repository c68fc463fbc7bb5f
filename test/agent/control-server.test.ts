import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { type ApiRequestInfo, type ControlServer, MAX_BODY_BYTES, startControlServer } from "../../src/agent/control-server.ts";

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

/** The plugin handler's calls (what reached it past the gate), by path. */
const pluginCalls: string[] = [];

function serve(
  name: string,
  extra: { group?: string; groupSocketPath?: string; ownUid?: number } = {},
): { server: ControlServer; socketPath: string; seen: Seen[]; infos: ApiRequestInfo[] } {
  const socketPath = join(dir, name);
  const seen: Seen[] = [];
  const infos: ApiRequestInfo[] = [];
  const server = startControlServer({
    socketPath,
    ...extra,
    routes: [
      { method: "GET", path: "/v1/status", access: "read", handle: async () => ({ ok: true }) },
      { method: "POST", path: "/v1/rotate", access: "trigger", body: v.object({ secret: v.string() }), handle: async (body) => ({ rotated: (body as { secret: string }).secret }) },
      { method: "POST", path: "/v1/inject", access: "place", body: v.object({ container: v.string() }), handle: async () => ({ injected: true }) },
      { method: "GET", path: "/v1/big", access: "read", handle: async () => ({ filler: "x".repeat(3 * 1024 * 1024) }) },
    ],
    plugin: async (req) => {
      const path = new URL(req.url, "http://dso").pathname;
      if (!path.startsWith("/Plugin.") && !path.startsWith("/VolumeDriver.")) return undefined;
      pluginCalls.push(path);
      const body = await req.text();
      return Response.json(path === "/VolumeDriver.Mount" ? { Err: "dso: SECRET_NOT_FOUND: no such secret" } : { Err: "", bytes: body.length });
    },
    onRequest: (info, callerUid) => {
      seen.push({ path: info.path, status: info.status, callerUid });
      infos.push(info);
    },
    log: quiet,
  });
  return { server, socketPath, seen, infos };
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

  test("plugin routes reach the handler for root only; the plugin handler's Err is the audit outcome; volume options by name", async () => {
    const { server, socketPath, infos } = serve("f.sock");
    try {
      const before = pluginCalls.length;
      const create = { Name: "v1", Opts: { secrets: "a,b", uid: "1000" } };
      const created = await call(socketPath, "/VolumeDriver.Create", create);
      // The handler got the body whole (read once, capped, by the server).
      expect(await created.json()).toEqual({ Err: "", bytes: JSON.stringify(create).length });
      expect((await call(socketPath, "/VolumeDriver.Mount", { Name: "v1", ID: "m" })).status).toBe(200);
      expect(pluginCalls.slice(before)).toEqual(["/VolumeDriver.Create", "/VolumeDriver.Mount"]);
      expect(infos).toEqual([
        { method: "POST", path: "/VolumeDriver.Create", status: 200, volume: "v1", options: ["secrets", "uid"] },
        { method: "POST", path: "/VolumeDriver.Mount", status: 200, volume: "v1", code: "SECRET_NOT_FOUND", error: "dso: SECRET_NOT_FOUND: no such secret" },
      ]);
    } finally {
      await server.stop(true);
    }
  });

  test("every route's body is capped, plugin routes included: past the limit 413, the connection closed, the handler never called", async () => {
    const { server, socketPath, infos } = serve("g.sock");
    try {
      const before = pluginCalls.length;
      const big = JSON.stringify({ Name: "v", Opts: { pad: "x".repeat(MAX_BODY_BYTES) } });
      for (const path of ["/VolumeDriver.Create", "/v1/rotate"]) {
        const reply = await call(socketPath, path, JSON.parse(big));
        expect(reply.status).toBe(413);
        expect(reply.headers.get("connection")).toBe("close");
      }
      expect(pluginCalls.length).toBe(before);
      expect(infos.map((i) => [i.path, i.status])).toEqual([
        ["/VolumeDriver.Create", 413],
        ["/v1/rotate", 413],
      ]);
    } finally {
      await server.stop(true);
    }
  });

  test.skipIf(!isRoot || !hasSetpriv)("another uid in the group: reads and triggers yes; plugin routes and /v1/inject 403 naming the route; with ownUid it is trusted (rootless)", async () => {
    const { server, socketPath, seen, infos } = serve("i.sock", { group: String(NOBODY) });
    const asNobody = async (path: string, body?: unknown, socket = socketPath) => {
      const p = Bun.spawn(
        ["setpriv", "--reuid", String(NOBODY), "--regid", String(NOBODY), "--clear-groups", "curl", "-sS", "--unix-socket", socket, ...(body === undefined ? [] : ["-d", JSON.stringify(body)]), "-w", "\n%{http_code}", `http://dso${path}`],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      const lines = out.split("\n");
      return { status: Number(lines.at(-1)), body: lines.slice(0, -1).join("\n") };
    };
    const before = pluginCalls.length;
    try {
      expect((await asNobody("/v1/status")).status).toBe(200);
      expect((await asNobody("/v1/rotate", { secret: "s" })).status).toBe(200);
      const inject = await asNobody("/v1/inject", { container: "c" });
      expect(inject.status).toBe(403);
      expect(JSON.parse(inject.body).error.message).toBe(`POST /v1/inject places a value: it needs root or the agent's own uid (caller uid ${NOBODY})`);
      for (const path of ["/Plugin.Activate", "/VolumeDriver.Create", "/VolumeDriver.Remove"]) {
        const r = await asNobody(path, { Name: "x", Opts: { secrets: "s" } });
        expect(r.status).toBe(403);
        expect(JSON.parse(r.body).error).toEqual({ code: "FORBIDDEN", message: expect.stringContaining(`${path} is the Docker plugin protocol: only dockerd may call it`) });
      }
      expect(pluginCalls.length).toBe(before);
      expect(seen.filter((s) => s.status === 403).map((s) => [s.path, s.callerUid])).toEqual([
        ["/v1/inject", NOBODY],
        ["/Plugin.Activate", NOBODY],
        ["/VolumeDriver.Create", NOBODY],
        ["/VolumeDriver.Remove", NOBODY],
      ]);
      expect(infos.find((i) => i.path === "/VolumeDriver.Create")).toMatchObject({ code: "FORBIDDEN", volume: "x", options: ["secrets"] });
    } finally {
      await server.stop(true);
    }
    // A rootless agent runs as the same uid as its dockerd: that uid is answered.
    const rootless = serve("j.sock", { group: String(NOBODY), ownUid: NOBODY });
    try {
      expect((await asNobody("/VolumeDriver.Create", { Name: "x" }, rootless.socketPath)).status).toBe(200);
      expect((await asNobody("/v1/inject", { container: "c" }, rootless.socketPath)).status).toBe(200);
    } finally {
      await rootless.server.stop(true);
    }
  });

  test.skipIf(!isRoot || !hasSetpriv)("the group socket: its directory 0750 <uid>:<group> (created, or taken over from an earlier run), the socket 0660; a group member reaches it, others not", async () => {
    const groupDir = join(dir, "run-dso", "control");
    const groupSocketPath = join(groupDir, "dso.sock");
    const { server, seen } = serve("k.sock", { group: String(NOBODY), groupSocketPath });
    try {
      const dirStat = await stat(groupDir);
      expect([dirStat.mode & 0o777, dirStat.uid, dirStat.gid]).toEqual([0o750, 0, NOBODY]);
      expect((await stat(join(dir, "run-dso"))).mode & 0o777).toBe(0o755);
      const sockStat = await stat(groupSocketPath);
      expect([sockStat.mode & 0o777, sockStat.gid]).toEqual([0o660, NOBODY]);
      const curlAs = (groups: string[]) =>
        Bun.spawn(["setpriv", "--reuid", "4243", "--regid", "4243", ...groups, "curl", "-sS", "--unix-socket", groupSocketPath, "http://dso/v1/status"], { stdout: "pipe", stderr: "pipe" });
      const member = curlAs([`--groups=${NOBODY}`]);
      expect(await new Response(member.stdout).text()).toBe('{"ok":true}');
      // Outside the group: the directory stops it (curl 7: could not connect).
      expect(await curlAs(["--clear-groups"]).exited).toBe(7);
      expect(seen).toEqual([{ path: "/v1/status", status: 200, callerUid: 4243 }]);
    } finally {
      await server.stop(true);
    }
    // Started again: the stale socket is replaced, the directory kept as it is.
    const again = serve("k2.sock", { group: String(NOBODY), groupSocketPath });
    try {
      expect((await call(groupSocketPath, "/v1/status")).status).toBe(200);
    } finally {
      await again.server.stop(true);
    }
  });

  test("a group socket path that is someone else's directory is refused before anything listens", async () => {
    const planted = join(dir, "planted");
    await mkdir(planted, { mode: 0o777 });
    await chmod(planted, 0o777);
    Bun.spawnSync(["chown", String(NOBODY), planted]);
    expect(() => serve("l.sock", { group: String(NOBODY), groupSocketPath: join(planted, "dso.sock") })).toThrow(`agent.group_socket: ${planted} is not a directory owned by the agent's uid`);
    expect(existsSync(join(dir, "l.sock"))).toBe(false);
  });
});
