/**
 * Counts copies of planted values in the whole readable memory of another process, as root:
 * every readable region of /proc/<pid>/maps is read through /proc/<pid>/mem in bounded chunks
 * and searched for each needle as UTF-8/Latin-1 bytes (how JSC keeps 8-bit strings, and how
 * Buffers hold them) and as UTF-16LE (JSC's 16-bit strings). The proof for issue 9 ("secret
 * values live only for the injection window"); also lists an agent's DSO processes to scan.
 *
 * Only pages that /proc/<pid>/pagemap reports in RAM or in swap are read: a Bun process maps
 * ~6.6 GB readable (JSC reserves gigabytes it never touches), ~70 MB of it resident. A page not
 * present reads as zeros or as the mapped file, so skipping it loses no copy; measured: a full
 * read of every readable page of a planted child (6.6 GB, 17 s) found the same counts as this
 * scan (44 MB, 0.1 s).
 *
 * Reading /proc/<pid>/mem needs ptrace access; root (CAP_SYS_PTRACE) has it even when the target
 * set PR_SET_DUMPABLE 0, which the agent and provider processes do (verified by the positive
 * control in test/e2e/memory.test.ts, which scans those very processes).
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync } from "node:fs";

/** Read size per syscall: a 1 GB region never needs a 1 GB buffer. */
const CHUNK_BYTES = 4 * 1024 * 1024;
const CHUNK = BigInt(CHUNK_BYTES);
/** x86-64 and arm64 (4K kernels) page size; /proc/<pid>/pagemap has one 8-byte entry per page. */
const PAGE = 4096n;
const PAGEMAP_BATCH_PAGES = 8192;
/** pagemap bits (Documentation/admin-guide/mm/pagemap.rst): 63 present in RAM, 62 swapped. */
const PAGE_PRESENT = 1n << 63n;
const PAGE_SWAPPED = 1n << 62n;
/** Candidate positions are found by searching a short common prefix, then each needle is compared. */
const PREFIX_BYTES = 6;

export interface Needle {
  /** A label for tables ("plugin v1"). */
  label: string;
  value: string;
}

export interface Counts {
  latin1: number;
  utf16: number;
}

export interface RegionHit {
  /** The maps line's name: a path, [heap], [stack], [anon] for unnamed mappings. */
  region: string;
  start: string;
  /** The mapping's permissions and size: tells a JS heap block from malloc arenas and stacks. */
  perms: string;
  sizeBytes: number;
  label: string;
  encoding: "latin1" | "utf16";
  count: number;
}

/** One copy with the bytes around it (ScanOptions.contextBytes): what holds it (a JS string, JSON text, ...). */
export interface Sighting {
  label: string;
  encoding: "latin1" | "utf16";
  region: string;
  address: bigint;
  before: Buffer;
  after: Buffer;
}

export interface ScanOptions {
  /** Capture this many bytes either side of each copy (0: none). */
  contextBytes?: number;
}

export interface ScanResult {
  pid: number;
  counts: Map<string, Counts>;
  /** Bytes of readable mappings (mostly reserved, never touched: JSC reserves GBs). */
  bytesMapped: number;
  /** Bytes actually read: the pages of readable mappings that are in RAM or swap. */
  bytesScanned: number;
  regionsScanned: number;
  /** Readable regions whose read failed (e.g. [vvar]) and the bytes they span. */
  regionsSkipped: number;
  bytesSkipped: number;
  /** Per region where anything was found: where the copies sit. */
  hits: RegionHit[];
  sightings: Sighting[];
  ms: number;
}

interface Region {
  start: bigint;
  end: bigint;
  perms: string;
  name: string;
}

interface Pattern {
  label: string;
  encoding: "latin1" | "utf16";
  bytes: Buffer;
}

function readableRegions(pid: number): Region[] {
  const regions: Region[] = [];
  for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    // 7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0    [heap]
    const match = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (!match || match[3]![0] !== "r") continue;
    regions.push({ start: BigInt(`0x${match[1]}`), end: BigInt(`0x${match[2]}`), perms: match[3]!, name: match[4]!.trim() || "[anon]" });
  }
  return regions;
}

function patternsOf(needles: readonly Needle[]): Pattern[] {
  return needles.flatMap((n) => [
    { label: n.label, encoding: "latin1" as const, bytes: Buffer.from(n.value, "utf8") },
    { label: n.label, encoding: "utf16" as const, bytes: Buffer.from(n.value, "utf16le") },
  ]);
}

/** Patterns grouped by their first bytes: one indexOf pass per distinct prefix, not per needle. */
function byPrefix(patterns: Pattern[]): Map<string, { prefix: Buffer; patterns: Pattern[] }> {
  const shortest = Math.min(...patterns.map((p) => p.bytes.length));
  const width = Math.min(PREFIX_BYTES, shortest);
  const groups = new Map<string, { prefix: Buffer; patterns: Pattern[] }>();
  for (const p of patterns) {
    const prefix = p.bytes.subarray(0, width);
    const key = prefix.toString("hex");
    const group = groups.get(key) ?? { prefix, patterns: [] };
    group.patterns.push(p);
    groups.set(key, group);
  }
  return groups;
}

/**
 * Scans every readable region of `pid`. Never the calling process: its own heap holds the
 * needles, so a self-scan would always "find" them.
 */
export function scanProcessMemory(pid: number, needles: readonly Needle[], options: ScanOptions = {}): ScanResult {
  if (pid === process.pid) throw new Error("scanProcessMemory refuses to scan the test process itself");
  if (needles.length === 0) throw new Error("scanProcessMemory needs at least one needle");
  const started = performance.now();
  const patterns = patternsOf(needles);
  const groups = [...byPrefix(patterns).values()];
  const longest = Math.max(...patterns.map((p) => p.bytes.length));
  const counts = new Map<string, Counts>(needles.map((n) => [n.label, { latin1: 0, utf16: 0 }]));
  const hitsByRegion = new Map<string, RegionHit>();
  const result: ScanResult = { pid, counts, bytesMapped: 0, bytesScanned: 0, regionsScanned: 0, regionsSkipped: 0, bytesSkipped: 0, hits: [], sightings: [], ms: 0 };
  const contextBytes = options.contextBytes ?? 0;
  // One buffer for the whole scan: the carry (bytes that may begin a match cut by a chunk edge) + a chunk.
  const buffer = Buffer.allocUnsafe(longest + CHUNK_BYTES);
  const pageFlags = Buffer.allocUnsafe(PAGEMAP_BATCH_PAGES * 8);
  const mem = openSync(`/proc/${pid}/mem`, "r");
  let pagemap: number;
  try {
    pagemap = openSync(`/proc/${pid}/pagemap`, "r");
  } catch (error) {
    closeSync(mem);
    throw error;
  }
  let carry = 0;
  let carryEnd = -1n;

  const sight = (region: Region, p: Pattern, address: bigint) => {
    const read = (from: bigint, length: number) => {
      const out = Buffer.alloc(length);
      try {
        return out.subarray(0, readSync(mem, out, 0, length, from));
      } catch {
        return out.subarray(0, 0);
      }
    };
    const before = address >= region.start + BigInt(contextBytes) ? read(address - BigInt(contextBytes), contextBytes) : Buffer.alloc(0);
    const after = read(address + BigInt(p.bytes.length), contextBytes);
    result.sightings.push({ label: p.label, encoding: p.encoding, region: region.name, address, before, after });
  };

  const search = (region: Region, window: Buffer, windowAddress: bigint) => {
    for (const group of groups) {
      for (let at = window.indexOf(group.prefix, 0); at !== -1; at = window.indexOf(group.prefix, at + 1)) {
        for (const p of group.patterns) {
          // Matches that end inside the carry were counted with the previous chunk.
          if (at + p.bytes.length <= carry || at + p.bytes.length > window.length) continue;
          if (!window.subarray(at, at + p.bytes.length).equals(p.bytes)) continue;
          counts.get(p.label)![p.encoding] += 1;
          const key = `${region.start}\0${p.label}\0${p.encoding}`;
          const hit = hitsByRegion.get(key) ?? {
            region: region.name,
            start: `0x${region.start.toString(16)}`,
            perms: region.perms,
            sizeBytes: Number(region.end - region.start),
            label: p.label,
            encoding: p.encoding,
            count: 0,
          };
          hit.count += 1;
          hitsByRegion.set(key, hit);
          if (contextBytes > 0) sight(region, p, windowAddress + BigInt(at));
        }
      }
    }
  };

  /** Reads [from, to) in chunks; false when the kernel refuses (e.g. [vvar]). */
  const scanRange = (region: Region, from: bigint, to: bigint): boolean => {
    // A string may straddle two pages or two adjacent mappings: keep the carry only across contiguous reads.
    if (from !== carryEnd) carry = 0;
    for (let offset = from; offset < to; ) {
      const want = Number(to - offset < CHUNK ? to - offset : CHUNK);
      let got = 0;
      try {
        got = readSync(mem, buffer, carry, want, offset);
      } catch {
        got = 0;
      }
      if (got <= 0) {
        result.bytesSkipped += Number(to - offset);
        carry = 0;
        carryEnd = -1n;
        return false;
      }
      const window = buffer.subarray(0, carry + got);
      search(region, window, offset - BigInt(carry));
      result.bytesScanned += got;
      offset += BigInt(got);
      const keep = Math.min(longest - 1, window.length);
      buffer.copyWithin(0, window.length - keep, window.length);
      carry = keep;
      carryEnd = offset;
    }
    return true;
  };

  /** The page runs of a region that are in RAM or in swap: the rest reads as zeros or as the mapped file. */
  function* residentRuns(region: Region): Generator<[bigint, bigint]> {
    let runStart = -1n;
    for (let page = region.start / PAGE; page < region.end / PAGE; ) {
      const batch = Number(region.end / PAGE - page < BigInt(PAGEMAP_BATCH_PAGES) ? region.end / PAGE - page : BigInt(PAGEMAP_BATCH_PAGES));
      let got = 0;
      try {
        got = readSync(pagemap, pageFlags, 0, batch * 8, page * 8n);
      } catch {
        got = 0;
      }
      const entries = Math.floor(got / 8);
      if (entries === 0) {
        // No page information: read the rest of the region as it is.
        if (runStart < 0n) runStart = page * PAGE;
        page = region.end / PAGE;
        break;
      }
      for (let i = 0; i < entries; i++, page++) {
        const flags = pageFlags.readBigUInt64LE(i * 8);
        const inMemory = (flags & PAGE_PRESENT) !== 0n || (flags & PAGE_SWAPPED) !== 0n;
        if (inMemory && runStart < 0n) runStart = page * PAGE;
        if (!inMemory && runStart >= 0n) {
          yield [runStart, page * PAGE];
          runStart = -1n;
        }
      }
    }
    if (runStart >= 0n) yield [runStart, region.end];
  }

  try {
    for (const region of readableRegions(pid)) {
      result.bytesMapped += Number(region.end - region.start);
      let ok = true;
      for (const [from, to] of residentRuns(region)) {
        if (!scanRange(region, from, to)) {
          ok = false;
          break;
        }
      }
      if (ok) result.regionsScanned += 1;
      else result.regionsSkipped += 1;
    }
  } finally {
    closeSync(mem);
    closeSync(pagemap);
  }
  result.hits = [...hitsByRegion.values()];
  result.ms = Math.round(performance.now() - started);
  return result;
}

export interface DsoProcess {
  pid: number;
  ppid: number;
  argv: string[];
  /** "agent", "provider file", ... from argv after the binary; the command name for others. */
  role: string;
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
  } catch {
    return [];
  }
}

function roleOf(argv: string[]): string {
  const [binary = "?", command, type] = argv;
  if (command === "agent") return "agent";
  if (command === "provider") return `provider ${type ?? "?"}`;
  return binary.split("/").pop() ?? binary;
}

/**
 * The process `rootPid` and all its descendants (parents from /proc/<pid>/stat), with argv.
 * For an agent: the agent and every provider process it started (and any wrapper around it).
 */
export function processTree(rootPid: number): DsoProcess[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    parents.set(ppid, [...(parents.get(ppid) ?? []), pid]);
  }
  const tree: DsoProcess[] = [];
  const visit = (pid: number, ppid: number) => {
    const argv = argvOf(pid);
    if (argv.length === 0) return; // gone, or a zombie
    tree.push({ pid, ppid, argv, role: roleOf(argv) });
    for (const child of parents.get(pid) ?? []) visit(child, pid);
  };
  visit(rootPid, parentOf(rootPid) ?? 0);
  return tree;
}

function executableOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/**
 * The DSO processes (agent, providers) under rootPid: those whose executable is `binary`, however
 * they were started (a wrapper such as unshare is left out), never the test process itself.
 */
export function dsoProcesses(rootPid: number, binary: string): DsoProcess[] {
  const wanted = realpathSync(binary);
  return processTree(rootPid).filter((p) => p.pid !== process.pid && executableOf(p.pid) === wanted);
}
