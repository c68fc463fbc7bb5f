/**
 * `bun run test:unit`: every test file that needs no root, no Docker daemon, no compiled binary
 * and no child process (a provider process started from source counts), found by reading each file and what it imports from test/support (transitively), so a
 * new test lands in the right tier without a list to keep. `bun run test` still runs them all.
 *
 *   bun test/unit-tier.ts           run the unit tier
 *   bun test/unit-tier.ts --list    print the files of each tier
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
/** What makes a test heavy: a daemon, the binary, root-only calls or tools, child processes. */
const HEAVY = [
  /\bBun\.spawn(Sync)?\(|\bspawn(Sync)?\(|\bnew ProviderProcess\(/,
  /\bensureDocker\b/,
  /\bdsoBinary\b|\bDSO_BINARY\b|\brunDso\b|\bstartAgent\b/,
  /\bprocess\.getuid\b|\bgetuid\(\)/,
  /["'`](mount|umount|setpriv|unshare|nsenter|dockerd|docker|docker-compose|systemd-analyze|ip)["'`]/,
  /\bBun\.\$`(mount|umount|ln|setpriv|docker)\b/,
  /\/run\/docker\b/,
  /needs root:|full tier:/, // a file that chowns, or spawns through src/, says so in a comment
];

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...testFiles(path));
    else if (entry.name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

const heavyCache = new Map<string, boolean>();

/** Whether `file` or a test-local module it imports (test/**, not src/) is heavy. */
function isHeavy(file: string, seen = new Set<string>()): boolean {
  const cached = heavyCache.get(file);
  if (cached !== undefined) return cached;
  if (seen.has(file)) return false;
  seen.add(file);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return false;
  }
  let heavy = HEAVY.some((re) => re.test(text));
  if (!heavy) {
    for (const match of text.matchAll(/(?:from|import\()\s*["'](\.{1,2}\/[^"']+)["']/g)) {
      const target = resolve(dirname(file), match[1]!);
      if (!target.startsWith(join(ROOT, "test"))) continue; // src/ is what the tests test
      if (isHeavy(target, seen)) {
        heavy = true;
        break;
      }
    }
  }
  heavyCache.set(file, heavy);
  return heavy;
}

const all = testFiles(join(ROOT, "test")).sort();
const unit = all.filter((f) => !isHeavy(f));

if (process.argv.includes("--list")) {
  for (const f of all) console.log(`${unit.includes(f) ? "unit " : "full "} ${relative(ROOT, f)}`);
  console.log(`${unit.length} of ${all.length} test files in the unit tier`);
} else {
  const proc = Bun.spawn(["bun", "test", "--timeout", "10000", ...unit.map((f) => `./${relative(ROOT, f)}`)], { cwd: ROOT, stdio: ["inherit", "inherit", "inherit"] });
  process.exit(await proc.exited);
}
