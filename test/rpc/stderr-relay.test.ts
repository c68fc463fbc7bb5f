/**
 * Issue 18 finding 9: what a provider child prints on stderr reaches the agent's log escaped, in
 * both log formats, under the agent's own tag: a child cannot claim `"tag":"audit"`, move the
 * cursor or colour the terminal, nor start a line of its own. A real child process (bun running
 * the provider host) and the real logger, whose stderr writes are captured.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configureLogger, type LogFormat } from "../../src/log/logger.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";

const FIXTURE = join(import.meta.dir, "fixtures/hostile-stderr-provider.ts");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dso-relay-"));
  await writeFile(join(dir, "db"), "value");
});
afterAll(async () => {
  configureLogger({ level: "info", format: "pretty" });
  await rm(dir, { recursive: true, force: true });
});

/** Everything the agent's logger writes while a hostile child starts and answers one call. */
async function relayed(format: LogFormat): Promise<string> {
  configureLogger({ level: "debug", format });
  const written: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk));
    return true;
  }) as typeof process.stderr.write;
  const p = new ProviderProcess({ configure: { name: "local", type: "file", config: { path: dir } }, command: [process.execPath, FIXTURE] });
  try {
    await p.fingerprint([{ name: "db" }]);
    for (let i = 0; i < 50 && !written.join("").includes("forged in field"); i++) await Bun.sleep(20);
  } finally {
    await p.stop();
    process.stderr.write = original;
  }
  return written.join("");
}

describe("a provider child's stderr in the agent's log", () => {
  test("JSON format: every line is the agent's, tagged provider:local; the forged tag, time and escapes stay data", async () => {
    const out = await relayed("json");
    expect(out).not.toContain("\u001b");
    expect(out).not.toContain("\u0007");
    const lines = out.trimEnd().split("\n");
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) expect(entry.tag).toBe("provider:local");
    const x = entries.find((e) => e.msg === "x");
    expect(x).toBeDefined();
    expect(x!.time).not.toBe("1999-01-01T00:00:00Z");
    expect(entries.some((e) => e.tag === "audit")).toBe(false);
    expect(JSON.stringify(entries)).toContain("\\u001b[31mfake");
  });

  test("human format: no escape reaches the terminal, no line starts with the child's text", async () => {
    const out = await relayed("pretty");
    expect(out).not.toContain("\u001b");
    expect(out).not.toContain("\u0007");
    const lines = out.trimEnd().split("\n");
    for (const line of lines) expect(line).toMatch(/^(DEBUG|INFO |WARN |ERROR) \[provider:local\] /);
    expect(out).toContain("\\u001b[31mfake");
    expect(out).toContain("forged in msg");
    expect(out).toContain("forged in field");
    // The forged line is still there, as data inside the provider's own line.
    expect(out).toContain("\\nERROR [audit] forged in msg");
  });
});
