/**
 * Imports run one way (docs/architecture.md): cli → agent → (watcher, reloader) → (secrets,
 * delivery) → (docker, rpc, api, config, os) → base (errors, log, version, util). A provider knows
 * only the provider contract; only the CLI's `dso provider` command loads the provider host. This
 * test reads every import (type-only ones too) of src/ and providers/ and fails on any import
 * that runs up or sideways, and on any cycle of static imports, between files of one room or
 * between rooms. A lazy `import()` (a descriptor's `load`, the CLI's command map) runs after
 * both modules have loaded, so it is not counted in cycles.
 */
import { describe, expect, test } from "bun:test";
import { Glob } from "bun";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = join(import.meta.dir, "../..");

/** Rank of each room: a room may import its own files and rooms of a lower rank. */
const RANK: Record<string, number> = {
  base: 0,
  "rpc-protocol": 0.4,
  "provider-contract": 0.5,
  "provider-descriptor": 0.6,
  "provider-registry": 0.7,
  /** Template parser and renderer: config parses templates, delivery renders them. */
  templates: 0.8,
  config: 1,
  docker: 1,
  rpc: 1,
  api: 1,
  /** Thin C library bindings (bun:ffi): imports nothing of the repo. */
  os: 0.3,
  secrets: 2,
  /** The lease keeper (dynamic credentials): beside the watcher's engines, below the reloader. */
  leases: 2.5,
  delivery: 2,
  audit: 1.8,
  metrics: 2,
  notify: 2,
  watcher: 3,
  reloader: 3,
  observe: 3.5,
  doctor: 4,
  agent: 4,
  "provider-host": 5,
  cli: 6,
  main: 7,
};

export function roomOf(path: string): string {
  if (path === "src/main.ts") return "main";
  if (path === "package.json") return "base";
  if (path === "src/errors.ts" || path === "src/version.ts" || path.startsWith("src/log/") || path.startsWith("src/util/")) return "base";
  if (path === "src/rpc/protocol.ts") return "rpc-protocol";
  if (path === "providers/types.ts" || path === "providers/errors.ts" || path === "providers/block-check.ts" || path === "providers/config-values.ts" || path === "providers/value-fingerprint.ts" || path === "providers/json-bytes.ts" || path === "providers/http-retry.ts" || path === "providers/bounded-read.ts" || path === "providers/json-keys.ts") return "provider-contract";
  if (path === "providers/host.ts") return "provider-host";
  if (path === "providers/registry.ts") return "provider-registry";
  if (/^providers\/[^/]+\/descriptor\.ts$/.test(path)) return "provider-descriptor";
  const provider = /^providers\/([^/]+)\//.exec(path);
  if (provider) return `provider:${provider[1]}`;
  const room = /^src\/([^/]+)\//.exec(path);
  return room ? room[1]! : `unknown:${path}`;
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s(?:[^"';]*?\sfrom\s)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file: string, { lazy = true } = {}): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    if (!lazy && m[1] === undefined) continue;
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith(".")) out.push(relative(ROOT, resolve(dirname(join(ROOT, file)), spec)));
  }
  return out;
}

/** Every cycle of a directed graph, one per strongly connected component (Tarjan), each as a path. */
export function cyclesOf(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, next);
    low.set(node, next++);
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!graph.has(to)) continue;
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(node, Math.min(low.get(node)!, index.get(to)!));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)!.includes(node)) cycles.push(component.reverse());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

/** Static imports between files, and between rooms (a room's imports of itself left out). */
function importGraphs(files: string[]): { files: Map<string, string[]>; rooms: Map<string, string[]> } {
  const fileGraph = new Map<string, string[]>();
  const roomGraph = new Map<string, string[]>();
  for (const file of files) {
    const targets = importsOf(file, { lazy: false });
    fileGraph.set(file, targets);
    const from = roomOf(file);
    const rooms = roomGraph.get(from) ?? [];
    for (const target of targets) if (roomOf(target) !== from && !rooms.includes(roomOf(target))) rooms.push(roomOf(target));
    roomGraph.set(from, rooms);
  }
  return { files: fileGraph, rooms: roomGraph };
}

/** Why `from` may not import `to`, or undefined when it may. */
export function forbidden(from: string, to: string): string | undefined {
  const a = roomOf(from);
  const b = roomOf(to);
  if (a === b) return undefined;
  // A provider: its own folder, the provider contract, the RPC protocol, and base.
  if (a.startsWith("provider:")) {
    if (to === `providers/${a.slice(9)}/descriptor.ts`) return undefined;
    return b === "provider-contract" || b === "base" || b === "rpc-protocol" ? undefined : `a provider may import only the provider contract`;
  }
  // A descriptor loads its own implementation, lazily; nothing else of the provider.
  if (a === "provider-descriptor" && b.startsWith("provider:")) return to === `${dirname(from)}/index.ts` ? undefined : "a descriptor may load only its own provider";
  if (b.startsWith("provider:")) return a === "provider-host" ? undefined : "only the provider registry loads providers";
  if (b === "provider-host" && a !== "cli") return "only `dso provider` (src/cli) starts the provider host";
  // The CLI talks to the agent through the control API contract, not through its internals.
  if (a === "cli" && (b === "reloader" || b === "watcher" || b === "secrets" || b === "delivery")) return `the CLI may not import ${b}: use src/api/`;
  const ra = RANK[a];
  const rb = RANK[b];
  if (ra === undefined || rb === undefined) return `unknown room ${ra === undefined ? a : b}`;
  return rb < ra ? undefined : `${a} may not import ${b} (imports run one way)`;
}

function allFiles(): string[] {
  const files: string[] = [];
  for (const base of ["src", "providers"]) for (const f of new Glob("**/*.ts").scanSync(join(ROOT, base))) files.push(`${base}/${f}`);
  return files;
}

describe("imports run one way", () => {
  test("no file imports up, sideways, or into a provider", () => {
    const problems: string[] = [];
    for (const file of allFiles()) {
      for (const target of importsOf(file)) {
        const why = forbidden(file, target);
        if (why) problems.push(`${file} → ${target}: ${why}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("no cycle of static imports, between files or between rooms (type-only imports count)", () => {
    const graphs = importGraphs(allFiles());
    expect(cyclesOf(graphs.files).map((c) => c.join(" → "))).toEqual([]);
    expect(cyclesOf(graphs.rooms).map((c) => c.join(" → "))).toEqual([]);
  });

  test("the cycle check finds a cycle (positive control)", () => {
    const graph = new Map([
      ["src/doctor/checks.ts", ["src/doctor/hardening.ts", "src/doctor/types.ts"]],
      ["src/doctor/hardening.ts", ["src/doctor/checks.ts"]],
      ["src/doctor/types.ts", []],
      ["src/a/x.ts", ["src/b/y.ts"]],
      ["src/b/y.ts", ["src/c/z.ts"]],
      ["src/c/z.ts", ["src/a/x.ts"]],
    ]);
    expect(cyclesOf(graph)).toEqual([
      ["src/doctor/checks.ts", "src/doctor/hardening.ts"],
      ["src/a/x.ts", "src/b/y.ts", "src/c/z.ts"],
    ]);
    expect(cyclesOf(new Map([["a", ["a"]]]))).toEqual([["a"]]);
    expect(cyclesOf(new Map([["a", ["b"]], ["b", []]]))).toEqual([]);
  });

  test("descriptors, the registry and the provider contract load no SDK", () => {
    const light = allFiles().filter((f) => ["provider-descriptor", "provider-registry", "provider-contract"].includes(roomOf(f)));
    expect(light.length).toBeGreaterThan(6);
    const heavy: string[] = [];
    for (const file of light) {
      const text = readFileSync(join(ROOT, file), "utf8");
      for (const m of text.matchAll(/^import[^"']*["']([^"'.][^"']*)["']/gm)) if (m[1] !== "valibot" && !m[1]!.startsWith("node:")) heavy.push(`${file} → ${m[1]}`);
    }
    expect(heavy).toEqual([]);
  });

  test("the check catches a forbidden import (positive control)", () => {
    expect(forbidden("src/delivery/deliver.ts", "src/reloader/files.ts")).toContain("imports run one way");
    expect(forbidden("src/agent/agent.ts", "src/cli/root.ts")).toContain("imports run one way");
    expect(forbidden("src/reloader/reconciler.ts", "src/watcher/docker-events.ts")).toContain("imports run one way");
    expect(forbidden("src/rpc/supervisor.ts", "providers/host.ts")).toContain("provider host");
    expect(forbidden("providers/aws/index.ts", "src/rpc/supervisor.ts")).toContain("provider contract");
    expect(forbidden("src/config/resolve.ts", "providers/aws/index.ts")).toContain("registry");
    expect(forbidden("providers/aws/descriptor.ts", "providers/aws/values.ts")).toContain("its own provider");
    expect(forbidden("src/rpc/provider-env.ts", "providers/registry.ts")).toBeUndefined();
    expect(forbidden("src/cli/commands/ls.ts", "src/reloader/container-status.ts")).toContain("src/api/");
    expect(forbidden("src/reloader/reconciler.ts", "src/delivery/planner.ts")).toBeUndefined();
  });
});
