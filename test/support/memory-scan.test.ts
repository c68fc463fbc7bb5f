/**
 * The memory scanner finds what is there and nothing else: a child process holds a planted value
 * as an 8-bit string, a 16-bit string and a Buffer (and has made itself non-dumpable, as the
 * agent does), plus a grid of exactly known copies laid across page and chunk edges and a small
 * Uint8Array found exactly once; bytes zeroed after use and a value never planted count 0. Without this, a scan that silently read nothing would "prove" anything.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { dsoProcesses, processTree, scanProcessMemory } from "./memory-scan.ts";

const hex = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
/** The grid: one copy ending just past every page edge of a 16 MB buffer (4 chunks of the scanner). */
const GRID_COPIES = 4096;
const FLIP = 0x20;

/**
 * Reads two lines from stdin: a value it keeps as strings and a Buffer, and a case-flipped value
 * it turns back into bytes only inside the grid (so the grid's copies are the only ones).
 */
const CHILD = `
import { dlopen, FFIType } from "bun:ffi";
const libc = dlopen("libc.so.6", { prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 } });
if (libc.symbols.prctl(4, 0, 0, 0, 0) !== 0) throw new Error("PR_SET_DUMPABLE failed");
const input = new Uint8Array(await new Response(Bun.stdin.stream()).arrayBuffer());
const cut = input.indexOf(10);
const value = new TextDecoder().decode(input.subarray(0, cut));
globalThis.kept8 = "" + value;
globalThis.kept8.charCodeAt(0);
globalThis.kept16 = String.fromCharCode(0x2603) + value;
globalThis.kept16.charCodeAt(0);
globalThis.keptBuffer = Buffer.from(value, "latin1");
const lines = [];
for (let from = cut + 1, to; (to = input.indexOf(10, from)) !== -1; from = to + 1) lines.push(input.subarray(from, to));
const [flipped, flippedSmall, flippedZeroed] = lines;
// Bytes the value never existed outside of: a small Uint8Array kept, and one zeroed after use
// (what issue 9 asks of the agent).
globalThis.small = flippedSmall.map((b) => b ^ ${FLIP});
const zeroed = flippedZeroed.map((b) => b ^ ${FLIP});
zeroed.fill(0);
globalThis.zeroed = zeroed;
const grid = new Uint8Array(${GRID_COPIES} * 4096);
for (let page = 1; page <= ${GRID_COPIES}; page++) {
  const at = page * 4096 - 5;
  for (let i = 0; i < flipped.length && at + i < grid.length; i++) grid[at + i] = flipped[i] ^ ${FLIP};
}
globalThis.grid = grid;
input.fill(0);
console.log("ready dumpable=" + libc.symbols.prctl(3, 0, 0, 0, 0));
setInterval(() => {}, 1000);
`;

let child: Subprocess<"pipe", "pipe", "inherit"> | undefined;

afterEach(() => {
  child?.kill("SIGKILL");
  child = undefined;
});

/** Starts the child; resolves once it holds the values and has said whether it is dumpable (PR_GET_DUMPABLE). */
async function plantedChild(value: string, gridValue: string, smallValue = "x", zeroedValue = "y"): Promise<{ pid: number; ready: string }> {
  child = Bun.spawn([process.execPath, "-e", CHILD], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const flipped = (v: string) => Buffer.concat([Buffer.from(v, "latin1").map((b) => b ^ FLIP), Buffer.from("\n")]);
  child.stdin.write(Buffer.concat([Buffer.from(`${value}\n`), flipped(gridValue), flipped(smallValue), flipped(zeroedValue)]));
  await child.stdin.end();
  const { value: line } = await child.stdout.getReader().read();
  return { pid: child.pid, ready: new TextDecoder().decode(line) };
}

describe("memory scan", () => {
  test("finds a planted value as Latin-1 and UTF-16, exact copies across page and chunk edges and in a small Uint8Array, 0 of zeroed bytes and of a value never planted", async () => {
    const planted = `dsomem-control-${hex(12)}`;
    // The grid's last copy would run past the buffer: it is cut short, so GRID_COPIES - 1 are whole.
    const gridValue = `dsomem-grid-${hex(12)}`;
    const small = `dsomem-small-${hex(12)}`;
    const zeroed = `dsomem-zeroed-${hex(12)}`;
    const never = `dsomem-never-${hex(12)}`;
    const { pid, ready } = await plantedChild(planted, gridValue, small, zeroed);
    // Like the agent and its providers: PR_SET_DUMPABLE 0 must not hide a process from root's scan.
    expect(ready.trim()).toBe("ready dumpable=0");
    const result = scanProcessMemory(pid, [
      { label: "planted", value: planted },
      { label: "grid", value: gridValue },
      { label: "small", value: small },
      { label: "zeroed", value: zeroed },
      { label: "never", value: never },
    ]);
    console.log(
      `scanned pid ${pid}: ${(result.bytesScanned / 1e6).toFixed(1)} MB of ${(result.bytesMapped / 1e9).toFixed(1)} GB mapped in ${result.ms} ms;`,
      JSON.stringify(Object.fromEntries(result.counts)),
    );
    expect(result.counts.get("planted")!.latin1).toBeGreaterThanOrEqual(2); // the 8-bit string and the Buffer
    expect(result.counts.get("planted")!.utf16).toBeGreaterThanOrEqual(1);
    expect(result.counts.get("grid")).toEqual({ latin1: GRID_COPIES - 1, utf16: 0 });
    expect(result.counts.get("small")).toEqual({ latin1: 1, utf16: 0 });
    expect(result.counts.get("zeroed")).toEqual({ latin1: 0, utf16: 0 });
    expect(result.counts.get("never")).toEqual({ latin1: 0, utf16: 0 });
    expect(result.bytesScanned).toBeGreaterThan(16 * 1024 * 1024);
  });

  test("lists a process tree with argv and refuses to scan the test process itself", async () => {
    const { pid } = await plantedChild(`dsomem-tree-${hex(4)}`, `dsomem-tree-${hex(4)}`);
    const tree = processTree(process.pid);
    expect(tree[0]).toMatchObject({ pid: process.pid });
    expect(tree.find((p) => p.pid === pid)).toMatchObject({ ppid: process.pid, argv: [process.execPath, "-e", CHILD] });
    expect(dsoProcesses(process.pid, process.execPath).map((p) => p.pid)).not.toContain(process.pid);
    expect(() => scanProcessMemory(process.pid, [{ label: "x", value: "x" }])).toThrow("itself");
  });
});
