import { afterAll, expect, test } from "bun:test";
import Dockerode from "dockerode";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createWithoutQuery } from "../../src/reloader/strategies/rolling.ts";

const dir = mkdtempSync(join(tmpdir(), "dso-create-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A Docker API stand-in that records what each create request carried where. */
function recorder() {
  const seen: Array<{ url: string; body: string }> = [];
  const socket = join(dir, `d${seen.length}-${Math.random().toString(36).slice(2)}.sock`);
  const server = Bun.serve({
    unix: socket,
    async fetch(req) {
      seen.push({ url: req.url, body: await req.text() });
      return Response.json({ Id: "abc", Warnings: [] }, { status: 201 });
    },
  });
  return { docker: new Dockerode({ socketPath: socket }), seen, stop: () => server.stop(true) };
}

const spec = { name: "app-next", Image: "busybox", Env: ["DB_PASSWORD=planted-env-value-9931"] } as Dockerode.ContainerCreateOptions;

test("a replacement container's spec (its environment values) goes in the body, never the URL", async () => {
  const r = recorder();
  try {
    await createWithoutQuery(r.docker, spec);
    expect(r.seen).toHaveLength(1);
    expect(new URL(r.seen[0]!.url).search).toBe("?name=app-next");
    expect(r.seen[0]!.url).not.toContain("planted-env-value-9931");
    expect(JSON.parse(r.seen[0]!.body)).toEqual({ Image: "busybox", Env: ["DB_PASSWORD=planted-env-value-9931"] });
  } finally {
    r.stop();
  }
});

test("positive control: dockerode's plain createContainer copies the whole spec into the URL", async () => {
  const r = recorder();
  try {
    await r.docker.createContainer({ ...spec });
    expect(decodeURIComponent(r.seen[0]!.url)).toContain("planted-env-value-9931");
  } finally {
    r.stop();
  }
});
