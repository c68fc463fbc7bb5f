/**
 * How the agent starts `dso provider <type>`: by re-executing its own binary. In the compiled
 * binary process.execPath is dso itself; in development it is bun, which needs the entry file.
 */
import { join } from "node:path";

export function isCompiledBinary(): boolean {
  return (process.argv[1] ?? "").startsWith("/$bunfs/") || (process.argv[1] ?? "").startsWith("B:/~BUN/");
}

export function selfCommand(args: string[]): string[] {
  if (isCompiledBinary()) return [process.execPath, ...args];
  return [process.execPath, join(import.meta.dir, "../main.ts"), ...args];
}
