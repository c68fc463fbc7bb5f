/**
 * Runs one argv-only command in a running container through the Docker exec API, optionally with
 * bytes on its stdin (hijacked connection), and returns its exit code and a short stderr excerpt.
 * No shell string is ever built here: callers pass argv, and data goes through stdin.
 */
import type Dockerode from "dockerode";
import { PassThrough } from "node:stream";
import { DsoError } from "../errors.ts";
import { escapeControls } from "../log/escape.ts";

/** A delivery exec (tar -x of at most a few MB into tmpfs) finishes in well under a second. */
export const EXEC_TIMEOUT_MS = 30_000;
export const SAFE_EXEC_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Only the start of stderr is kept: enough for a one-line error, bounded against a noisy process. */
const MAX_STDERR_BYTES = 4096;
/** A line of a container's output quoted in an error message is cut here. */
const MAX_QUOTED_CHARS = 300;

export interface ExecOptions {
  cmd: string[];
  stdin?: Uint8Array;
  workingDir?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Keep the start of stdout (bounded like stderr); for commands that print metadata only. */
  captureStdout?: boolean;
}

export interface ExecOutcome {
  exitCode: number;
  stderr: string;
  stdout?: string;
}

export async function runInContainer(docker: Dockerode, containerId: string, opts: ExecOptions): Promise<ExecOutcome> {
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? EXEC_TIMEOUT_MS);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  signal.throwIfAborted();
  const exec = await docker.getContainer(containerId).exec({
    Cmd: opts.cmd,
    // Root inside the container, whatever USER the image sets: we chown to the configured ids.
    User: "0:0",
    // A fixed PATH: a directory the application can write must not supply our sh or tar.
    Env: [`PATH=${SAFE_EXEC_PATH}`],
    AttachStdin: opts.stdin !== undefined,
    AttachStdout: true,
    AttachStderr: true,
    ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
  });
  const stream = (await exec.start({ hijack: true, stdin: opts.stdin !== undefined })) as NodeJS.ReadWriteStream & {
    destroy(error?: Error): void;
  };
  const { stdout, stderr } = collectOutput(docker, stream);
  const onAbort = () => stream.destroy(new Error("aborted"));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("close", resolve);
      stream.on("error", reject);
    });
    if (opts.stdin !== undefined) stream.end(Buffer.from(opts.stdin.buffer, opts.stdin.byteOffset, opts.stdin.byteLength));
    await ended;
  } catch (error) {
    throw execFailed(opts.cmd, signal.aborted ? (timeout.aborted ? "timed out" : "cancelled") : (error as Error).message, error);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  const { ExitCode } = await exec.inspect();
  return { exitCode: ExitCode ?? -1, stderr: stderr(), ...(opts.captureStdout ? { stdout: stdout() } : {}) };
}

/** The first MAX_STDERR_BYTES of each stream; the rest is read and dropped. */
function collectOutput(docker: Dockerode, stream: NodeJS.ReadableStream): { stdout: () => string; stderr: () => string } {
  const out = new PassThrough();
  const err = new PassThrough();
  const stdout = bounded(out);
  const stderr = bounded(err);
  docker.modem.demuxStream(stream, out, err);
  return { stdout, stderr };
}

function bounded(stream: PassThrough): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on("data", (chunk: Buffer) => {
    if (size >= MAX_STDERR_BYTES) return;
    chunks.push(chunk);
    size += chunk.length;
  });
  return () => Buffer.concat(chunks).toString("utf8").slice(0, MAX_STDERR_BYTES);
}

function execFailed(cmd: string[], reason: string, cause: unknown): DsoError {
  return new DsoError("DELIVERY_FAILED", `docker exec ${cmd[0] ?? "?"} in the container failed: ${reason}`, { cause });
}

/** Exit codes the runtime uses when the command could not be run at all (not found / not executable). */
export function commandMissing(exitCode: number): boolean {
  return exitCode === 126 || exitCode === 127;
}

/**
 * The first non-empty line of a process's stderr, for an error message. The container wrote it:
 * terminal escapes and other controls in it are escaped (`\u001b`), so it can neither colour nor
 * rewrite a terminal showing `dso ls` or the log, and it is cut to MAX_QUOTED_CHARS.
 */
export function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l) ?? "";
  const escaped = escapeControls(line);
  return escaped.length > MAX_QUOTED_CHARS ? `${escaped.slice(0, MAX_QUOTED_CHARS)}…` : escaped;
}
