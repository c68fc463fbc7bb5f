/**
 * Hostile dso.yaml files, mutated from the ones users copy: every examples/ dso.yaml, the
 * fixtures of test/config/ and the yaml blocks of README.md and docs/configuration.md. A case is
 * a small description (which seed, which mutations) so a shrunk counterexample reads as a
 * recipe; `materialise` turns it into the bytes of a file. Mutations: on the parsed tree (drop,
 * rename, add, replace with a wrong type, a huge string, deep nesting), on the text (lines
 * deleted, duplicated — duplicate keys —, swapped, re-indented, tabs, truncation, YAML anchors,
 * alias bombs and self-referencing aliases, multi-documents, tags) and on the bytes (NUL, BOM,
 * invalid UTF-8, UTF-16).
 */
import fc from "fast-check";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";

const ROOT = join(import.meta.dir, "../..");

/** The environment every case is read with (the fixtures reference these). */
export const FUZZ_ENV: Record<string, string> = { VAULT_TOKEN: "dev-token", DSO_WEBHOOK_TOKEN: "0123456789abcdef0123456789" };

function yamlBlocks(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((block) => /^(providers|agent|secrets|defaults|version|provider):/m.test(block));
}

let cachedSeeds: string[] | undefined;

/** Seed files, in a fixed order (the seed index of a case names one). */
export function configSeeds(): string[] {
  if (cachedSeeds) return cachedSeeds;
  const examples = readdirSync(join(ROOT, "examples"), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => join("examples", d.name, "dso.yaml"))
    .sort();
  const fixtures = readdirSync(join(ROOT, "test/config/fixtures"))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => join("test/config/fixtures", f));
  const files = [...examples, ...fixtures].map((f) => readFileSync(join(ROOT, f), "utf8"));
  cachedSeeds = [...files, ...yamlBlocks("README.md"), ...yamlBlocks("docs/configuration.md")];
  return cachedSeeds;
}

/** A value that replaces a node: plain JSON values, or a recipe for a big one. */
export type FuzzValue = unknown | { $huge: number } | { $deep: number; kind: "list" | "map" };

const KEYS = [
  "providers", "agent", "defaults", "secrets", "notifications", "version", "provider", "config", "region",
  "name", "type", "inject", "path", "uid", "gid", "mode", "mappings", "rotation", "enabled", "strategy",
  "signal", "targets", "containers", "labels", "auth", "method", "params", "retry", "attempts", "backoff",
  "watch", "polling_interval", "webhook", "auth_token", "listen", "metrics", "audit", "output", "socket",
  "socket_group", "volumes_root", "cache", "stage", "reload_strategy", "health_check_timeout", "webhooks",
  "url", "events", "headers", "timeout", "max_retries", "queue_size", "allow_insecure_http", "<<", "__proto__",
  "constructor", "toString", "",
];

const PLAUSIBLE = [
  "0400", "0o777", "07777", "400", "-1", "1e3", "0x1F", "/run/secrets", "/", "/run/../etc", "run/secrets", "/run/\u0000x",
  "5s", "0s", "1ms", "999999999h", "signal", "rolling", "auto", "SIGHUP", "hup", "SIGNOPE", "true", "false", "yes",
  "${VAULT_TOKEN}", "${UNSET_VAR}", "${", "$${x}", "${A:-b}", "${1BAD}", "file", "env", "aws", "huawei", "local",
  "..data", "../etc/shadow", "a/b", "..dso_x", ".", "", " ", "\t", "127.0.0.1:9464", "0.0.0.0:1", "http://x", "https://", "4294967295",
];

const scalar = fc.oneof(
  fc.constantFrom(...PLAUSIBLE),
  fc.string({ unit: "binary", maxLength: 24 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);

export const fuzzValue: fc.Arbitrary<FuzzValue> = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 2, arbitrary: fc.array(scalar, { maxLength: 4 }) },
  { weight: 2, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 })), scalar, { maxKeys: 4 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 1_000_000 }).map((n) => ({ $huge: n })) },
  { weight: 1, arbitrary: fc.record({ $deep: fc.integer({ min: 2, max: 400 }), kind: fc.constantFrom("list" as const, "map" as const) }) },
);

export type TreeOp =
  | { op: "drop"; pick: number }
  | { op: "replace"; pick: number; value: FuzzValue }
  | { op: "rename"; pick: number; key: string }
  | { op: "add"; pick: number; key: string; value: FuzzValue };

export type TextOp =
  | { op: "insert"; at: number; text: string }
  | { op: "deleteLine"; at: number }
  | { op: "dupLine"; at: number }
  | { op: "swapLines"; a: number; b: number }
  | { op: "indent"; at: number; by: number }
  | { op: "tabify"; at: number }
  | { op: "truncate"; at: number }
  | { op: "crlf" }
  | { op: "prepend"; snippet: string }
  | { op: "aliasBomb"; levels: number; width: number; under: string };

export type ByteOp = { op: "insertBytes"; at: number; bytes: number[] } | { op: "setByte"; at: number; byte: number } | { op: "bom" } | { op: "utf16" };

export interface ConfigCase {
  seed: number;
  tree: TreeOp[];
  text: TextOp[];
  bytes: ByteOp[];
}

const SNIPPETS = [
  "\t", "\u0000", "\uFEFF", "&a ", "*a", "<<: *a\n", "---\n", "...\n", "%YAML 1.2\n", ": ", "- ", "{", "}", "[", "]", "\"", "'",
  "#", "\r", "\u2028", "\u0085", "!!binary ", "!!js/function ", "!!str ", "? ", "|\n", ">-\n", "&x [*x]", "\\", "%", "@", "`",
];

/** Self-referencing aliases (cycles in the parsed tree) and anchors, written where they matter. */
const PREPEND = [
  "a: &a [*a]\n",
  "a: &a {x: *a}\n",
  "agent: &c {watch: *c}\n",
  "secrets:\n  - &s {name: x, targets: {containers: [*s]}}\n",
  "providers:\n  p: &p {type: file, config: *p}\n",
  "base: &b {type: file}\nproviders:\n  f:\n    <<: *b\n",
  "---\nagent: {}\n---\nagent: {}\n",
  "%TAG ! tag:x,2000:\n",
  "!!map\n",
  "? [a, b]\n: c\n",
];

const treeOp: fc.Arbitrary<TreeOp> = fc.oneof(
  fc.record({ op: fc.constant("drop" as const), pick: fc.nat() }),
  fc.record({ op: fc.constant("replace" as const), pick: fc.nat(), value: fuzzValue }),
  fc.record({ op: fc.constant("rename" as const), pick: fc.nat(), key: fc.oneof(fc.constantFrom(...KEYS), fc.string({ unit: "binary", maxLength: 12 })) }),
  fc.record({ op: fc.constant("add" as const), pick: fc.nat(), key: fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 12 })), value: fuzzValue }),
);

const textOp: fc.Arbitrary<TextOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("insert" as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...SNIPPETS), fc.string({ unit: "binary", maxLength: 6 })) }) },
  fc.record({ op: fc.constant("deleteLine" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("dupLine" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("swapLines" as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ op: fc.constant("indent" as const), at: fc.nat(), by: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ op: fc.constant("tabify" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.constant({ op: "crlf" as const }),
  fc.record({ op: fc.constant("prepend" as const), snippet: fc.constantFrom(...PREPEND) }),
  fc.record({
    op: fc.constant("aliasBomb" as const),
    levels: fc.integer({ min: 1, max: 9 }),
    width: fc.integer({ min: 2, max: 9 }),
    under: fc.constantFrom("bomb", "agent", "secrets", "providers"),
  }),
);

const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  fc.record({ op: fc.constant("insertBytes" as const), at: fc.nat(), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 6 }) }),
  fc.record({ op: fc.constant("setByte" as const), at: fc.nat(), byte: fc.constantFrom(0x00, 0xff, 0xfe, 0xc0, 0x80, 0xed, 0x09, 0x0d) }),
  fc.constant({ op: "bom" as const }),
  fc.constant({ op: "utf16" as const }),
);

export const configCase: fc.Arbitrary<ConfigCase> = fc.record({
  seed: fc.nat(),
  tree: fc.array(treeOp, { maxLength: 3 }),
  text: fc.array(textOp, { maxLength: 3 }),
  bytes: fc.array(byteOp, { maxLength: 2 }),
});

/** Huge strings enter the tree as a short token, replaced after serialising (yaml.stringify of a megabyte string takes seconds). */
const hugeToken = (n: number) => `HUGEVALUE${n}END`;

function materialiseValue(value: FuzzValue): unknown {
  if (value && typeof value === "object" && "$huge" in value) return hugeToken((value as { $huge: number }).$huge);
  if (value && typeof value === "object" && "$deep" in value) {
    const { $deep, kind } = value as { $deep: number; kind: "list" | "map" };
    let node: unknown = "leaf";
    for (let i = 0; i < $deep; i++) node = kind === "list" ? [node] : { k: node };
    return node;
  }
  return value;
}

type Slot = { parent: Record<string, unknown> | unknown[]; key: string | number };

function slotsOf(node: unknown, out: Slot[] = []): Slot[] {
  if (Array.isArray(node)) node.forEach((child, i) => (out.push({ parent: node, key: i }), slotsOf(child, out)));
  else if (node && typeof node === "object") for (const [k, child] of Object.entries(node)) out.push({ parent: node as Record<string, unknown>, key: k }), slotsOf(child, out);
  return out;
}

function containersOf(node: unknown, out: (Record<string, unknown> | unknown[])[] = []): (Record<string, unknown> | unknown[])[] {
  if (node && typeof node === "object") {
    out.push(node as Record<string, unknown>);
    for (const child of Object.values(node)) containersOf(child, out);
  }
  return out;
}

function applyTreeOp(doc: Record<string, unknown>, op: TreeOp): void {
  if (op.op === "add") {
    const targets = containersOf(doc);
    const target = targets[op.pick % targets.length]!;
    if (Array.isArray(target)) target.push(materialiseValue(op.value));
    else Object.defineProperty(target, op.key, { value: materialiseValue(op.value), enumerable: true, writable: true, configurable: true });
    return;
  }
  const slots = slotsOf(doc);
  if (slots.length === 0) return;
  const { parent, key } = slots[op.pick % slots.length]!;
  if (op.op === "replace") (parent as Record<string | number, unknown>)[key] = materialiseValue(op.value);
  else if (op.op === "drop") {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else if (!Array.isArray(parent)) {
    const value = parent[key as string];
    delete parent[key as string];
    Object.defineProperty(parent, op.key, { value, enumerable: true, writable: true, configurable: true });
  }
}

function applyTextOp(text: string, op: TextOp): string {
  const lines = text.split("\n");
  const line = (n: number) => n % Math.max(1, lines.length);
  switch (op.op) {
    case "insert": {
      const at = op.at % (text.length + 1);
      return text.slice(0, at) + op.text + text.slice(at);
    }
    case "deleteLine":
      lines.splice(line(op.at), 1);
      return lines.join("\n");
    case "dupLine":
      lines.splice(line(op.at), 0, lines[line(op.at)] ?? "");
      return lines.join("\n");
    case "swapLines": {
      const [a, b] = [line(op.a), line(op.b)];
      [lines[a], lines[b]] = [lines[b] ?? "", lines[a] ?? ""];
      return lines.join("\n");
    }
    case "indent": {
      const n = line(op.at);
      const l = lines[n] ?? "";
      lines[n] = op.by >= 0 ? " ".repeat(op.by) + l : l.replace(new RegExp(`^ {0,${-op.by}}`), "");
      return lines.join("\n");
    }
    case "tabify": {
      const n = line(op.at);
      lines[n] = (lines[n] ?? "").replace(/^ +/, "\t");
      return lines.join("\n");
    }
    case "truncate":
      return text.slice(0, op.at % (text.length + 1));
    case "crlf":
      return text.replace(/\n/g, "\r\n");
    case "prepend":
      return op.snippet + text;
    case "aliasBomb": {
      const row = (i: number) => `[${Array(op.width).fill(i === 0 ? "lol" : `*b${i - 1}`).join(", ")}]`;
      const anchors = Array.from({ length: op.levels }, (_, i) => `  l${i}: &b${i} ${row(i)}`).join("\n");
      return `${op.under}:\n${anchors}\n  top: *b${op.levels - 1}\n${text}`;
    }
  }
}

function applyByteOp(bytes: Uint8Array, op: ByteOp): Uint8Array {
  switch (op.op) {
    case "insertBytes": {
      const at = op.at % (bytes.length + 1);
      const out = new Uint8Array(bytes.length + op.bytes.length);
      out.set(bytes.subarray(0, at));
      out.set(op.bytes, at);
      out.set(bytes.subarray(at), at + op.bytes.length);
      return out;
    }
    case "setByte": {
      if (bytes.length === 0) return bytes;
      const out = Uint8Array.from(bytes);
      out[op.at % out.length] = op.byte;
      return out;
    }
    case "bom":
      const out = new Uint8Array(bytes.length + 3);
      out.set([0xef, 0xbb, 0xbf]);
      out.set(bytes, 3);
      return out;
    case "utf16": {
      const text = new TextDecoder().decode(bytes);
      return new Uint8Array(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]));
    }
  }
}

/** The bytes of the file a case describes. */
export function materialise(c: ConfigCase): Uint8Array {
  const seeds = configSeeds();
  let text = seeds[c.seed % seeds.length]!;
  if (c.tree.length > 0) {
    const doc = Bun.YAML.parse(text) as Record<string, unknown>;
    for (const op of c.tree) applyTreeOp(doc, op);
    text = stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 }).replace(/HUGEVALUE(\d+)END/g, (_m, n: string) => "x".repeat(Number(n)));
  }
  for (const op of c.text) text = applyTextOp(text, op);
  let bytes = new TextEncoder().encode(text);
  for (const op of c.bytes) bytes = applyByteOp(bytes, op) as Uint8Array<ArrayBuffer>;
  return bytes;
}

/** Changes that must not change what a valid file means. */
export type Rewrite = "crlf" | "comments" | "reindent" | "reorder" | "bom" | "trailingSpaces" | "flowJson";

export const rewriteCase = fc.record({
  seed: fc.nat(),
  rewrites: fc.uniqueArray(fc.constantFrom<Rewrite>("crlf", "comments", "reindent", "reorder", "bom", "trailingSpaces", "flowJson"), { minLength: 1, maxLength: 3 }),
  shuffle: fc.nat(),
});
export type RewriteCase = { seed: number; rewrites: Rewrite[]; shuffle: number };

function shuffled(node: unknown, salt: number): unknown {
  if (Array.isArray(node)) return node.map((item) => shuffled(item, salt));
  if (!node || typeof node !== "object") return node;
  const entries = Object.entries(node);
  entries.sort((a, b) => ((hash(a[0]) ^ salt) >>> 0) - ((hash(b[0]) ^ salt) >>> 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, shuffled(v, salt)]));
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Structural rewrites first (they re-serialise the parsed file), then the textual ones. */
const REWRITE_ORDER: Rewrite[] = ["reorder", "flowJson", "comments", "reindent", "trailingSpaces", "crlf", "bom"];

export function rewrite(text: string, rewrites: Rewrite[], salt: number): string {
  let out = text;
  for (const r of REWRITE_ORDER.filter((x) => rewrites.includes(x))) {
    if (r === "reorder") out = stringify(shuffled(Bun.YAML.parse(out), salt));
    else if (r === "flowJson") out = JSON.stringify(Bun.YAML.parse(out), null, salt % 2 ? 2 : 0);
    // Every line shifted right by the same amount: the structure (relative indentation) is unchanged.
    else if (r === "reindent") out = out.split("\n").map((l) => (l.trim() === "" ? l : `${" ".repeat(1 + (salt % 4))}${l}`)).join("\n");
    else if (r === "comments") out = out.split("\n").map((l, i) => (i % 2 ? `${l}` : `# fuzz comment ${i}\n${l}`)).join("\n") + "\n# end\n";
    else if (r === "trailingSpaces") out = out.replace(/\n/g, "   \n");
    else if (r === "crlf") out = out.replace(/\r?\n/g, "\r\n");
    else if (r === "bom") out = `\uFEFF${out.replace(/^\uFEFF/, "")}`;
  }
  return out;
}
