/**
 * Process lifecycle of one provider child (hashicorp/go-plugin's cmdrunner): spawn this binary's
 * `provider <type>` with the provider's environment only, kill it, ask it to stop and kill it
 * after SHUTDOWN_GRACE_MS, and tell whether an exit was ours. The backoff between restarts is
 * here too; the supervisor decides when to restart.
 */
import type { Subprocess } from "bun";
import { closeSync } from "node:fs";
import { currentLogLevel, type FieldLogger } from "../log/logger.ts";
import { openPipe } from "../os/libc.ts";
import { encodeFrame } from "./framing.ts";
import { ownedPipeStream } from "./owned-pipe.ts";
import { providerChildEnv } from "./provider-env.ts";
import { selfCommand } from "./self-command.ts";

export const SHUTDOWN_GRACE_MS = 2_000;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30_000;

export function backoffDelay(failures: number, random = Math.random, baseMs = BACKOFF_BASE_MS): number {
  const exp = Math.min(BACKOFF_MAX_MS, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp * (0.8 + 0.4 * random()));
}

export interface SpawnOptions {
  type: string;
  env: Record<string, string | undefined>;
  /** Override how the child is started (tests); default: this binary's `provider <type>`. */
  command?: string[];
  /**
   * Read the child's stdout into buffers the agent owns (owned-pipe.ts): for a child whose
   * output carries values. Falls back to Bun's pipe when libc is not reachable.
   */
  ownedOutput: boolean;
  log: FieldLogger;
}

/** One running child: its pipes, and whether its end was our doing. */
export class ChildProcess {
  readonly stdout: ReadableStream<Uint8Array>;
  private killedByUs = false;

  private constructor(readonly process: Subprocess<"pipe", "pipe", "pipe">, stdout: ReadableStream<Uint8Array>) {
    this.stdout = stdout;
  }

  static spawn(options: SpawnOptions): ChildProcess {
    const pipe = options.ownedOutput ? ownedPipe(options.log) : undefined;
    let child: Subprocess<"pipe", "pipe", "pipe">;
    try {
      child = Bun.spawn(options.command ?? selfCommand(["provider", options.type]), {
        stdin: "pipe",
        stdout: pipe ? pipe.write : "pipe",
        stderr: "pipe",
        env: { ...providerChildEnv(options.type, options.env), DSO_LOG_FORMAT: "json", DSO_LOG_LEVEL: currentLogLevel() },
      }) as Subprocess<"pipe", "pipe", "pipe">;
    } catch (error) {
      if (pipe) closeSync(pipe.read);
      throw error;
    } finally {
      if (pipe) closeSync(pipe.write);
    }
    return new ChildProcess(child, pipe ? ownedPipeStream(pipe.read) : child.stdout);
  }

  get pid(): number {
    return this.process.pid;
  }

  get exited(): Promise<number | null> {
    return this.process.exited;
  }

  get stderr(): ReadableStream<Uint8Array> {
    return this.process.stderr;
  }

  /** Whether this process ended because we killed it (hang, bad frame, closed pipe). */
  get wasKilled(): boolean {
    return this.killedByUs;
  }

  /** "signal SIGKILL" or "code 1", for logs. */
  howItExited(code: number | null): string {
    return this.process.signalCode ? `signal ${this.process.signalCode}` : `code ${code}`;
  }

  write(bytes: Uint8Array): void {
    this.process.stdin.write(bytes);
  }

  /** Push what was written; a child that died mid-write rejects, which `onBroken` hears. */
  flush(onBroken: () => void): void {
    void Promise.resolve(this.process.stdin.flush()).catch(onBroken);
  }

  kill(): void {
    this.killedByUs = true;
    this.process.kill("SIGKILL");
  }

  /** Send the shutdown frame, close stdin, and kill the child if it has not exited after the grace. */
  async shutdown(frameId: number): Promise<void> {
    try {
      this.process.stdin.write(encodeFrame({ id: frameId, method: "shutdown" }));
      void Promise.resolve(this.process.stdin.end()).catch(() => {});
    } catch {
      // already gone
    }
    const exited = await Promise.race([this.process.exited.then(() => true), Bun.sleep(SHUTDOWN_GRACE_MS).then(() => false)]);
    if (!exited) this.process.kill("SIGKILL");
    await this.process.exited;
  }
}

/** A pipe for a child's stdout, or undefined (Bun's own pipe then) when libc is not reachable. */
function ownedPipe(log: FieldLogger): { read: number; write: number } | undefined {
  try {
    return openPipe();
  } catch (error) {
    log.debug("reading the fetch process through Bun's pipe (no owned pipe)", { error: error instanceof Error ? error.message : String(error) });
    return undefined;
  }
}
