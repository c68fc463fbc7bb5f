/**
 * Hostile requests to the agent's unix socket — the control API (/v1/...) and the Docker plugin
 * protocol on the same socket — sent as raw HTTP/1.1 bytes so methods, paths, headers and
 * declared lengths can be anything: wrong types, extra fields, huge, truncated and non-JSON
 * bodies. The property checks each answer; slow clients (bytes dribbled, connections left open)
 * run beside it.
 */
import fc from "fast-check";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent, type AgentProcess } from "../support/agent-process.ts";
import { type FuzzFigures, type Verdict, OK, runFuzz, violation } from "../support/fuzz.ts";

export const PLUGIN_PATHS = [
  "/Plugin.Activate", "/VolumeDriver.Create", "/VolumeDriver.Mount", "/VolumeDriver.Unmount", "/VolumeDriver.Remove",
  "/VolumeDriver.Get", "/VolumeDriver.List", "/VolumeDriver.Path", "/VolumeDriver.Capabilities",
];
const API_PATHS = ["/v1/status", "/v1/containers", "/v1/sync", "/v1/rotate", "/v1/inject", "/v1/plan", "/metrics"];
const ODD_PATHS = ["/", "/v1", "/v1/", "//v1/status", "/v1/status/../sync", "/v1/status?x=1", "/v1/%00", "/VolumeDriver.", "/plugin.activate", "*", "/../../etc/passwd"];

const jsonish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom("db", "fuzz-vol", "app/db", "", "../x", "a".repeat(3000), "\u0000", null, true, 0, -1, 1e308),
    fc.string({ unit: "binary", maxLength: 20 }),
    fc.integer(),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom("container", "secret", "secrets", "Name", "Opts", "ID", "secrets ", "x", "__proto__"), tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** Bodies with the right fields, so valid requests (2xx, or a plugin reply without Err) are exercised too. */
const plausibleBody = fc.oneof(
  fc.record({ Name: fc.constantFrom("fuzz-vol", "fuzz-vol-2", "bad name", "..", "x".repeat(300)), Opts: fc.option(fc.dictionary(fc.constantFrom("secrets", "mode", "uid", "size"), fc.constantFrom("db", "0400", "1000", "db,db", ""), { maxKeys: 3 })), ID: fc.option(fc.constantFrom("c1", "c2", "")) }, { requiredKeys: ["Name"] }),
  fc.record({ container: fc.constantFrom("none-such", "", "x".repeat(3000)), secrets: fc.option(fc.array(fc.constantFrom("db", "nope", ""), { maxLength: 3 })) }, { requiredKeys: [] }),
  fc.record({ secret: fc.constantFrom("db", "nope", "../etc/passwd", "") }),
);

export type Body =
  | { kind: "none" }
  | { kind: "json"; value: unknown }
  | { kind: "text"; text: string }
  | { kind: "bytes"; bytes: number[] }
  | { kind: "huge"; size: number; json: boolean };

export interface RequestCase {
  method: string;
  path: string;
  headers: [string, string][];
  body: Body;
  /** Declared Content-Length minus the bytes sent (>0: a truncated body, the client then closes). */
  shortBy: number;
}

const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  { weight: 4, arbitrary: plausibleBody.map((value) => ({ kind: "json" as const, value })) },
  { weight: 3, arbitrary: jsonish.map((value) => ({ kind: "json" as const, value })) },
  { weight: 2, arbitrary: fc.oneof(fc.constantFrom("{", '{"Name":', "null", "[]", "{}", '{"Name":"fuzz-vol"}{}', "\uFEFF{}", "nope"), fc.string({ maxLength: 40 })).map((text) => ({ kind: "text" as const, text })) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }).map((bytes) => ({ kind: "bytes" as const, bytes })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("huge" as const), size: fc.constantFrom(70 * 1024, 1024 * 1024, 8 * 1024 * 1024), json: fc.boolean() }) },
);

export const requestCase: fc.Arbitrary<RequestCase> = fc.record({
  method: fc.oneof({ weight: 6, arbitrary: fc.constantFrom("POST", "GET") }, fc.constantFrom("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW", "post")),
  path: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...PLUGIN_PATHS) }, { weight: 3, arbitrary: fc.constantFrom(...API_PATHS) }, fc.constantFrom(...ODD_PATHS)),
  headers: fc.array(
    fc.tuple(
      fc.constantFrom("Content-Type", "Accept", "X-Fuzz", "Transfer-Encoding", "Expect"),
      fc.constantFrom("application/json", "application/vnd.docker.plugins.v1.2+json", "text/plain", "chunked", "100-continue", "\u00ff"),
    ),
    { maxLength: 2 },
  ),
  body,
  shortBy: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 50 })),
});

function bodyBytes(b: Body): Uint8Array {
  switch (b.kind) {
    case "none":
      return new Uint8Array();
    case "json":
      return new TextEncoder().encode(JSON.stringify(b.value) ?? "null");
    case "text":
      return new TextEncoder().encode(b.text);
    case "bytes":
      return Uint8Array.from(b.bytes);
    case "huge":
      return new TextEncoder().encode(b.json ? `{"Name":"${"n".repeat(b.size)}"}` : "x".repeat(b.size));
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request over a fresh connection; resolves with the parsed answer, or undefined when the server closed without one. */
export async function sendRaw(socket: string, c: RequestCase, timeoutMs: number): Promise<RawResponse | undefined> {
  const payload = bodyBytes(c.body);
  const declared = payload.length + c.shortBy;
  const head = [`${c.method} ${c.path} HTTP/1.1`, "Host: dso", "Connection: close", ...c.headers.filter(([k]) => k !== "Transfer-Encoding").map(([k, v]) => `${k}: ${v}`)];
  if (c.body.kind !== "none" || c.shortBy > 0) head.push(`Content-Length: ${declared}`);
  const request = Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`, "latin1"), payload]);
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(parseResponse(Buffer.concat(chunks)));
    };
    const timer = setTimeout(
      () => {
        finish();
        conn?.end();
      },
      c.shortBy > 0 || isMalformedHttp(c) ? Math.min(timeoutMs, TRUNCATED_WAIT_MS) : timeoutMs,
    );
    let conn: Awaited<ReturnType<typeof Bun.connect>> | undefined;
    Bun.connect({
      unix: socket,
      socket: {
        open(s) {
          conn = s;
          let offset = 0;
          const pump = () => {
            while (offset < request.length) {
              const n = s.write(request.subarray(offset));
              if (n <= 0) return;
              offset += n;
            }
            // A truncated body: the client gives up (half-close) after its last byte.
            if (c.shortBy > 0) s.shutdown(true);
          };
          (s as unknown as { pump: () => void }).pump = pump;
          pump();
        },
        drain(s) {
          (s as unknown as { pump: () => void }).pump?.();
        },
        data(_s, data) {
          chunks.push(Buffer.from(data));
          // A complete answer ends the case even when the server keeps the connection open.
          if (isComplete(Buffer.concat(chunks))) finish();
        },
        close: finish,
        error: finish,
      },
    }).catch(finish);
  });
}

/** Drops interim answers (`100 Continue` to an Expect header). */
function finalAnswer(raw: Buffer): Buffer {
  let out = raw;
  while (/^HTTP\/1\.[01] 1\d\d /.test(out.subarray(0, 16).toString("latin1"))) {
    const end = out.indexOf("\r\n\r\n");
    if (end < 0) return out;
    out = out.subarray(end + 4);
  }
  return out;
}

function isComplete(all: Buffer): boolean {
  const raw = finalAnswer(all);
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(raw.subarray(0, end).toString("latin1"))?.[1];
  return length !== undefined && raw.length - end - 4 >= Number(length);
}

function parseResponse(all: Buffer): RawResponse | undefined {
  const text = finalAnswer(all).toString("utf8");
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  if (!status) return undefined;
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
  let body = text.slice(end + 4);
  if (headers["transfer-encoding"] === "chunked") body = dechunk(body);
  return { status, headers, body };
}

function dechunk(text: string): string {
  let out = "";
  let rest = text;
  for (;;) {
    const eol = rest.indexOf("\r\n");
    if (eol < 0) return out;
    const size = Number.parseInt(rest.slice(0, eol), 16);
    if (!size) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 4 + size);
  }
}

/**
 * A request Bun's HTTP parser drops by closing the connection, before any code of ours runs: a
 * method Bun does not know (BREW, or lower-case post), a target that is not a path (`*`: 400 with no body), a
 * header value with a non-ASCII byte.
 */
const HTTP_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

export function isMalformedHttp(c: RequestCase): boolean {
  return !HTTP_METHODS.includes(c.method) || !c.path.startsWith("/") || c.headers.some(([, value]) => /[^\x20-\x7e]/.test(value));
}

/** How long a client that sent a truncated body waits for an answer before it gives up. */
const TRUNCATED_WAIT_MS = 1_500;

/**
 * What every answer must be: for the control API and any other path, a 2xx with a JSON body or
 * a 4xx/5xx JSON error with a code, never a 500 INTERNAL (an exception that escaped a handler);
 * for a plugin call, dockerd's protocol — a JSON object whose `Err`, when set, is one `dso: ...`
 * line. A truncated body may get no answer at all (the client went away first).
 */
export function judgeResponse(c: RequestCase, r: RawResponse | undefined): Verdict {
  if (!r) return c.shortBy > 0 || isMalformedHttp(c) ? OK : violation("no HTTP answer");
  if (isMalformedHttp(c) && r.status === 400 && r.body === "") return OK;
  if (c.method === "HEAD") return r.status < 500 ? OK : violation(`HEAD got ${r.status}`);
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    if (c.path === "/metrics" && r.status === 200) return OK;
    return violation(`status ${r.status} with a body that is not JSON: ${JSON.stringify(r.body.slice(0, 200))}`);
  }
  const isPlugin = PLUGIN_PATHS.includes(c.path) && c.method === "POST";
  if (isPlugin && r.status === 200) {
    if (!json || typeof json !== "object") return violation(`plugin reply is not an object: ${r.body.slice(0, 200)}`);
    const err = (json as { Err?: unknown }).Err;
    if (err !== undefined && typeof err !== "string") return violation("plugin Err is not a string");
    if (typeof err === "string" && err !== "") {
      if (!err.startsWith("dso: ") || /[\r\n]/.test(err)) return violation(`plugin Err is not one "dso: ..." line: ${JSON.stringify(err.slice(0, 200))}`);
      if (err.length > 600) return violation(`plugin Err is ${err.length} characters long`);
      if (/INTERNAL/.test(err)) return violation(`plugin Err from a crash: ${err.slice(0, 200)}`);
    }
    return OK;
  }
  if (r.status >= 200 && r.status < 300) return OK;
  const error = (json as { error?: { code?: unknown; message?: unknown } }).error;
  if (r.status < 400 || typeof error?.code !== "string" || typeof error.message !== "string") return violation(`status ${r.status} without a JSON error and code: ${r.body.slice(0, 200)}`);
  if (r.status === 500 || error.code === "INTERNAL") return violation(`a 500 (${error.code}): ${error.message.slice(0, 300)}`);
  return OK;
}

/** Slow clients: connections that dribble a request a byte at a time, or stop half-way and stay open. */
export function startSlowClients(socket: string, count: number): { stop: () => void; answered: () => number } {
  const sockets: { end: () => void }[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  let answered = 0;
  for (let i = 0; i < count; i++) {
    const request = i % 2 === 0 ? 'POST /v1/sync HTTP/1.1\r\nHost: dso\r\nContent-Length: 20\r\n\r\n{"container":' : "GET /v1/status HTTP/1.1\r\nHost: dso\r\nX-Slow: ";
    Bun.connect({
      unix: socket,
      socket: {
        open(s) {
          sockets.push(s);
          let at = 0;
          // One byte every 200 ms, then silence with the connection left open.
          timers.push(
            setInterval(() => {
              if (at < request.length) s.write(request[at++]!);
            }, 200),
          );
        },
        data() {
          answered++;
        },
      },
    }).catch(() => {});
  }
  return {
    stop: () => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.end();
    },
    answered: () => answered,
  };
}

/** Counterexamples found by this fuzzer, run first every time. */
export const SOCKET_REGRESSIONS: RequestCase[] = [
  // The JSON body "\r": a carriage return in Err (valibot echoed the value).
  { method: "POST", path: "/VolumeDriver.Get", headers: [], body: { kind: "json", value: "\r" }, shortBy: 0 },
  // The body null: a TypeError in the Mount/Unmount observer ("null is not an object").
  { method: "POST", path: "/VolumeDriver.Unmount", headers: [], body: { kind: "text", text: "null" }, shortBy: 0 },
  { method: "POST", path: "/VolumeDriver.Mount", headers: [], body: { kind: "text", text: "[]" }, shortBy: 0 },
  // 8 MB to a plugin route: read whole before the cap.
  { method: "POST", path: "/VolumeDriver.Create", headers: [], body: { kind: "huge", size: 8 * 1024 * 1024, json: true }, shortBy: 0 },
];

const CASE_BOUND_MS = 10_000;
const STATUS_EVERY_MS = 500;
const SLOW_CLIENTS = 6;

async function statusLatencyMs(agent: AgentProcess): Promise<number | undefined> {
  const started = performance.now();
  const { code } = await agent.cli(["status", "--json"]);
  return code === 0 ? performance.now() - started : undefined;
}

export interface SocketFuzzResult {
  figures: FuzzFigures;
  /** `dso status` latencies sampled during the run, ms. */
  latencies: number[];
  unanswered: number;
  /** `dso status` latency after the run, undefined when it did not answer. */
  after: number | undefined;
}

/** The socket property against a running agent, with slow clients open and `dso status` sampled throughout. */
export async function fuzzSocket(agent: AgentProcess, runs: number): Promise<SocketFuzzResult> {
  const slow = startSlowClients(agent.socket, SLOW_CLIENTS);
  const latencies: number[] = [];
  let unanswered = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const ms = await statusLatencyMs(agent);
      if (ms === undefined) unanswered++;
      else latencies.push(ms);
      await Bun.sleep(STATUS_EVERY_MS);
    }
  })();
  const figures = await runFuzz({
    target: "socket",
    arbitrary: requestCase,
    runs,
    caseTimeoutMs: CASE_BOUND_MS,
    examples: SOCKET_REGRESSIONS,
    check: async (c) => {
      if (agent.proc.exitCode !== null) return { ok: false, kind: "crash", detail: `agent exited with ${agent.proc.exitCode}` };
      return judgeResponse(c, await sendRaw(agent.socket, c, CASE_BOUND_MS - 1_000));
    },
  });
  sampling = false;
  await sampler;
  slow.stop();
  return { figures, latencies, unanswered, after: await statusLatencyMs(agent) };
}

export const SOCKET_PLANTED_VALUE = "fuzz-socket-value-7Qm2";

/** The compiled agent with the file provider (one secret, db) and a DSO volume root, for the socket property. */
export async function startSocketAgent(dockerHost: string): Promise<{ agent: AgentProcess; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "dso-fuzz-socket-"));
  const volumesRoot = join(dir, "volumes");
  await mkdir(join(dir, "secrets"));
  await writeFile(join(dir, "secrets", "db"), SOCKET_PLANTED_VALUE);
  await writeFile(
    join(dir, "dso.yaml"),
    `providers:\n  local:\n    type: file\n    config:\n      path: ${join(dir, "secrets")}\nagent:\n  volumes_root: ${volumesRoot}\n  watch:\n    polling_interval: 1s\n`,
  );
  const agent = await startAgent({ dir, config: join(dir, "dso.yaml"), dockerHost, name: "fuzz-socket" });
  return {
    agent,
    cleanup: async () => {
      await agent.stop("SIGTERM");
      Bun.spawnSync(["umount", "-l", volumesRoot]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
