/**
 * Runs the compiled `dist/dso agent` against the test daemon, with its logs captured to a file
 * so tests can wait for lines and scan every log line for planted secret values.
 */
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { dsoBinary } from "./dso-binary.ts";

export interface AgentProcess {
  proc: Subprocess;
  socket: string;
  logPath: string;
  logs(): string;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number>;
  cli(args: string[], extraEnv?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
}

export async function startAgent(options: {
  dir: string;
  config: string;
  dockerHost: string;
  env?: Record<string, string>;
  name?: string;
  /** Where the agent listens; default <dir>/<name>.sock. */
  socket?: string;
  /** Runs the agent's argv under another command (a sandbox), e.g. (argv) => ["setpriv", ..., ...argv]. */
  wrap?: (argv: string[]) => string[];
  /** How long to wait for "agent listening" (default 20 s). */
  readyTimeoutMs?: number;
}): Promise<AgentProcess> {
  const binary = await dsoBinary();
  const socket = options.socket ?? join(options.dir, `${options.name ?? "agent"}.sock`);
  const logPath = join(options.dir, `${options.name ?? "agent"}-${Date.now()}.log`);
  const env = { PATH: process.env.PATH!, DOCKER_HOST: options.dockerHost, ...options.env };
  const argv = [binary, "agent", "--config", options.config, "--socket", socket, "--log-format", "json", "--log-level", "debug"];
  const proc = Bun.spawn(options.wrap ? options.wrap(argv) : argv, {
    env,
    stdin: "ignore",
    stdout: Bun.file(logPath),
    stderr: Bun.file(logPath),
  });
  const agent: AgentProcess = {
    proc,
    socket,
    logPath,
    logs: () => {
      try {
        return readFileSync(logPath, "utf8");
      } catch {
        return "";
      }
    },
    async waitForLog(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const match = agent.logs().split("\n").find((line) => pattern.test(line));
        if (match) return match;
        if (proc.exitCode !== null) throw new Error(`agent exited (${proc.exitCode}) before ${pattern}:\n${agent.logs().slice(-3000)}`);
        await Bun.sleep(100);
      }
      throw new Error(`timed out waiting for ${pattern} in agent log:\n${agent.logs().slice(-3000)}`);
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null) proc.kill(signal);
      return proc.exited;
    },
    async cli(args, extraEnv = {}) {
      const run = Bun.spawn([binary, ...args, "--socket", socket], {
        env: { ...env, ...extraEnv },
        stdout: "pipe",
        stderr: "pipe",
        stdin: "ignore",
      });
      const [stdout, stderr, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
      return { code, stdout, stderr };
    },
  };
  try {
    await agent.waitForLog(/agent listening/, options.readyTimeoutMs);
  } catch (error) {
    // Never leave an agent behind that no test holds.
    proc.kill("SIGKILL");
    throw error;
  }
  return agent;
}
