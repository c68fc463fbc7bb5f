/**
 * The managed plugin's log levels (issue 22): dockerd logs a managed plugin's stdout at level info
 * and its stderr at level error (moby plugin/manager.go makeLoggerStreams), so the plugin's info
 * lines showed as level=error. With DSO_LOG_STREAMS=split (deploy/plugin/config.json) the agent
 * writes lines below error to stdout.
 */
import { expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dsoBinary } from "../support/dso-binary.ts";

async function agentOutput(dir: string, env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  const config = join(dir, "dso.yaml");
  await writeFile(config, `providers:\n  f:\n    type: file\n    config:\n      path: ${dir}\nagent:\n  volumes_root: ${join(dir, "volumes")}\n`);
  const proc = Bun.spawn([await dsoBinary(), "agent", "--config", config, "--socket", join(dir, "a.sock"), "--log-format", "json"], {
    env: { PATH: process.env.PATH!, DOCKER_HOST: `unix://${dir}/no-docker.sock`, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let stdout = "";
  let stderr = "";
  const drain = async (stream: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    for await (const chunk of stream) add(new TextDecoder().decode(chunk));
  };
  const drained = Promise.all([drain(proc.stdout, (t) => (stdout += t)), drain(proc.stderr, (t) => (stderr += t))]);
  // Until the agent has logged an info line (listening) and a warning (Docker unreachable).
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !(/"level":"info"/.test(stdout + stderr) && /"level":"warn"/.test(stdout + stderr))) await Bun.sleep(50);
  proc.kill("SIGTERM");
  await proc.exited;
  await drained;
  Bun.spawnSync(["umount", "-l", join(dir, "volumes")]);
  return { stdout, stderr };
}

test("split streams: info and warn lines on stdout, none on stderr; by default everything on stderr", async () => {
  const dir = await mkdtemp(join(tmpdir(), "dso-logstreams-"));
  try {
    const split = await agentOutput(dir, { DSO_LOG_STREAMS: "split" });
    expect(split.stdout).toContain('"level":"info"');
    expect(split.stdout).toContain('"level":"warn"');
    for (const line of split.stderr.split("\n").filter(Boolean)) expect(line).toContain('"level":"error"');
    const plain = await agentOutput(dir, {});
    expect(plain.stdout).toBe("");
    expect(plain.stderr).toContain('"level":"info"');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
