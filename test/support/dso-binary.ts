import { existsSync } from "node:fs";
import { join } from "node:path";

export const REPO_ROOT = join(import.meta.dir, "../..");
export const DSO_BINARY = join(REPO_ROOT, "dist/dso");

let built: Promise<void> | undefined;

/** The compiled binary; built once per test run if `bun run build` has not been run. */
export async function dsoBinary(): Promise<string> {
  if (existsSync(DSO_BINARY)) return DSO_BINARY;
  built ??= (async () => {
    const proc = Bun.spawn(["bun", "build.ts"], { cwd: REPO_ROOT, stdout: "ignore", stderr: "inherit" });
    if ((await proc.exited) !== 0) throw new Error("bun build.ts failed");
  })();
  await built;
  return DSO_BINARY;
}

export interface DsoRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runDso(
  args: string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<DsoRun> {
  const binary = await dsoBinary();
  const proc = Bun.spawn([binary, ...args], {
    cwd: options.cwd,
    env: (options.env ?? { PATH: process.env.PATH }) as Record<string, string>,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    timeout: options.timeoutMs ?? 30_000,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}
