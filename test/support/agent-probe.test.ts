import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer } from "node:net";
import { countingProxy } from "./agent-probe.ts";

/** A raw HTTP/1.1 GET through `socket` whose reader stalls for `stallMs` first (a busy agent). */
function slowGet(socket: string, path: string, stallMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = connect(socket, () => {
      c.write(`GET ${path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n`);
      c.pause();
      setTimeout(() => c.resume(), stallMs);
    });
    c.on("data", (d: Buffer) => chunks.push(d));
    c.on("end", () => resolve(Buffer.concat(chunks)));
    c.on("error", reject);
  });
}

const dir = mkdtempSync(join(tmpdir(), "dso-proxy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A 1,000-container `GET /containers/json` is megabytes: the proxy must not drop what the
// kernel's socket buffer cannot take at once (the bench's agent once hung on a cut reply).
test("the counting proxy passes a large reply whole and counts the request", async () => {
  const body = Buffer.alloc(8 * 1024 * 1024, "x");
  for (let i = 0; i < body.length; i += 4096) body.write(String(i % 997), i);
  const upstream = Bun.serve({ unix: join(dir, "up.sock"), fetch: () => new Response(body) });
  const proxy = countingProxy(join(dir, "up.sock"), join(dir, "proxy.sock"));
  await proxy.ready;
  try {
    const reply = await slowGet(join(dir, "proxy.sock"), "/v1.41/containers/json?all=1", 500);
    const got = reply.subarray(reply.indexOf("\r\n\r\n") + 4);
    expect(got.length).toBe(body.length);
    expect(got.equals(body)).toBe(true);
    expect(proxy.counts().get("GET /containers/json")).toBe(1);
  } finally {
    proxy.stop();
    upstream.stop(true);
  }
});

// dockerode ends its side after an exec's stdin (the tar) and still reads the exec's output.
test("the counting proxy keeps a half-closed connection open for the reply", async () => {
  const upstream = createServer({ allowHalfOpen: true }, (c) => {
    let got = 0;
    c.on("data", (d: Buffer) => void (got += d.length));
    c.on("end", () => c.end(`got ${got}\n`));
  }).listen(join(dir, "half-up.sock"));
  await new Promise((resolve) => upstream.once("listening", resolve));
  const proxy = countingProxy(join(dir, "half-up.sock"), join(dir, "half-proxy.sock"));
  await proxy.ready;
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      let text = "";
      const c = connect({ path: join(dir, "half-proxy.sock"), allowHalfOpen: true }, () => c.end("x".repeat(23)));
      c.on("data", (d: Buffer) => void (text += d.toString()));
      c.on("end", () => resolve(text));
      c.on("error", reject);
    });
    expect(reply).toBe("got 23\n");
  } finally {
    proxy.stop();
    upstream.close();
  }
});
