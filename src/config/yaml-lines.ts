/**
 * Bun.YAML.parse returns plain values without positions, so config errors could not say where
 * they are. This is a small line scanner for block-style YAML (the style dso.yaml files are
 * written in): it records the line of every mapping key and sequence item by path. Flow
 * collections (`[a, b]`, `{a: 1}`), block scalars and multi-line scalars are treated as one
 * value on their first line; lookups inside them fall back to the nearest recorded parent.
 */

export type YamlPath = readonly (string | number)[];

export interface DuplicateKey {
  path: (string | number)[];
  line: number;
  firstLine: number;
}

export interface YamlLineIndex {
  /** 1-based line of `path`, or of its nearest recorded ancestor; 1 when nothing matches. */
  lineOf(path: YamlPath | string): number;
  /** The value text written on the key's own line (comment stripped), if any. */
  rawValueOf(path: YamlPath | string): string | undefined;
  /** Keys written twice in one mapping: Bun.YAML keeps the last silently. */
  duplicates: DuplicateKey[];
}

interface Frame {
  indent: number;
  path: (string | number)[];
  kind: "map" | "seq";
  nextIndex: number;
  seen: Map<string, number>;
}

interface Entry {
  line: number;
  raw?: string;
}

const SEP = "\u0000";

function keyOf(path: YamlPath): string {
  return path.map(String).join(SEP);
}

function splitPath(path: YamlPath | string): (string | number)[] {
  if (typeof path !== "string") return [...path];
  return path === "" ? [] : path.split(".");
}

/** Reads a quoted key at the start of `text`; returns the key and the rest after the quote. */
function readQuoted(text: string): { key: string; rest: string } | undefined {
  const quote = text[0];
  let out = "";
  for (let i = 1; i < text.length; i++) {
    const ch = text[i]!;
    if (quote === "'" && ch === "'" && text[i + 1] === "'") {
      out += "'";
      i++;
      continue;
    }
    if (quote === '"' && ch === "\\" && i + 1 < text.length) {
      out += text[i + 1];
      i++;
      continue;
    }
    if (ch === quote) return { key: out, rest: text.slice(i + 1) };
    out += ch;
  }
  return undefined;
}

/** Splits `key: value` (plain or quoted key). Returns undefined when the text is not a key line. */
function splitKeyLine(text: string): { key: string; value: string } | undefined {
  if (text.startsWith('"') || text.startsWith("'")) {
    const quoted = readQuoted(text);
    if (!quoted) return undefined;
    const rest = quoted.rest.trimStart();
    if (!rest.startsWith(":")) return undefined;
    if (rest.length > 1 && rest[1] !== " " && rest[1] !== "\t") return undefined;
    return { key: quoted.key, value: rest.slice(1) };
  }
  if (/^[[{#&*!|>%@`]/.test(text)) return undefined;
  const match = /:(?=\s|$)/.exec(text);
  if (!match) return undefined;
  const key = text.slice(0, match.index).trimEnd();
  if (key.includes(" #")) return undefined;
  return { key, value: text.slice(match.index + 1) };
}

/** Strips a trailing ` # comment` that is outside quotes. */
function stripComment(value: string): string {
  let quote: string | undefined;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "#" && (i === 0 || /\s/.test(value[i - 1]!))) return value.slice(0, i).trim();
  }
  return value.trim();
}

/** True when a value opens children on the next lines: nothing, or only an anchor and/or tag. */
function opensBlock(value: string): boolean {
  return value === "" || /^([&!][^\s]*\s*)+$/.test(value);
}

function isBlockScalar(value: string): boolean {
  return /^[|>][-+0-9]*$/.test(value.replace(/^([&!][^\s]*\s+)+/, ""));
}

function isDash(text: string): boolean {
  return text === "-" || text.startsWith("- ") || text.startsWith("-\t");
}

export function indexYamlLines(text: string): YamlLineIndex {
  const entries = new Map<string, Entry>();
  const duplicates: DuplicateKey[] = [];
  const root: Frame = { indent: -1, path: [], kind: "map", nextIndex: 0, seen: new Map() };
  const stack: Frame[] = [root];
  let pending: { path: (string | number)[]; indent: number } | undefined;
  /** While set, lines indented deeper than this belong to a multi-line value and are skipped. */
  let skipDeeperThan: number | undefined;

  const record = (path: (string | number)[], line: number, raw?: string) => {
    const k = keyOf(path);
    if (!entries.has(k)) entries.set(k, { line, raw });
  };

  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const full = lines[n]!;
    const body = full.trimStart();
    const indent = full.length - body.length;
    if (body === "" || body.startsWith("#")) continue;
    if (skipDeeperThan !== undefined) {
      if (indent > skipDeeperThan) continue;
      skipDeeperThan = undefined;
    }
    if (indent === 0 && (body.startsWith("---") || body.startsWith("...") || body.startsWith("%"))) continue;

    if (pending) {
      const startsSeq = isDash(body);
      if (indent > pending.indent || (indent === pending.indent && startsSeq)) {
        stack.push({ indent, path: pending.path, kind: startsSeq ? "seq" : "map", nextIndex: 0, seen: new Map() });
      }
      pending = undefined;
    }
    while (stack.length > 1) {
      const top = stack[stack.length - 1]!;
      if (top.indent > indent || (top.indent === indent && top.kind === "seq" && !isDash(body))) stack.pop();
      else break;
    }

    let frame = stack[stack.length - 1]!;
    let content = body;
    let column = indent;
    // A line can hold several nested openers: `- - key: v` or `- key: v`.
    for (;;) {
      if (isDash(content) && frame.kind === "seq") {
        const itemPath = [...frame.path, frame.nextIndex++];
        const after = content.slice(1);
        const rest = after.trimStart();
        const restColumn = column + 1 + (after.length - rest.length);
        const restValue = stripComment(rest);
        record(itemPath, lineNo, restValue === "" ? undefined : restValue);
        if (restValue === "" || opensBlock(restValue)) {
          pending = { path: itemPath, indent: column };
          break;
        }
        if (isDash(rest)) {
          frame = { indent: restColumn, path: itemPath, kind: "seq", nextIndex: 0, seen: new Map() };
          stack.push(frame);
          content = rest;
          column = restColumn;
          continue;
        }
        if (splitKeyLine(rest)) {
          frame = { indent: restColumn, path: itemPath, kind: "map", nextIndex: 0, seen: new Map() };
          stack.push(frame);
          content = rest;
          column = restColumn;
          continue;
        }
        skipDeeperThan = column;
        break;
      }
      const kv = frame.kind === "map" ? splitKeyLine(content) : undefined;
      if (!kv) {
        skipDeeperThan = column;
        break;
      }
      const keyPath = [...frame.path, kv.key];
      const firstLine = frame.seen.get(kv.key);
      if (firstLine !== undefined) duplicates.push({ path: keyPath, line: lineNo, firstLine });
      else frame.seen.set(kv.key, lineNo);
      const value = stripComment(kv.value);
      record(keyPath, lineNo, value === "" ? undefined : value);
      if (opensBlock(value)) pending = { path: keyPath, indent: column };
      else skipDeeperThan = column;
      if (isBlockScalar(value)) skipDeeperThan = column;
      break;
    }
  }

  const find = (path: YamlPath | string): Entry | undefined => {
    const parts = splitPath(path);
    for (let len = parts.length; len > 0; len--) {
      const hit = entries.get(keyOf(parts.slice(0, len)));
      if (hit) return hit;
    }
    return undefined;
  };

  return {
    lineOf: (path) => find(path)?.line ?? 1,
    rawValueOf: (path) => entries.get(keyOf(splitPath(path)))?.raw,
    duplicates,
  };
}

const MAX_LINES_TO_BISECT = 5000;
/**
 * Text re-parsed in all while bisecting. Each step parses a whole prefix, so the scan is
 * quadratic: a 400-line, 250 KB broken file took 49 s (found by test/fuzz). Past the budget the
 * caller falls back to the `yaml` package's position.
 */
const MAX_BISECT_BYTES = 2 * 1024 * 1024;

/**
 * Bun's YAML errors carry no position. Find the line where the text stops being parseable: the
 * first line from which every longer prefix fails (a prefix that ends inside an unclosed
 * multi-line value fails too, but a longer one that closes it parses again).
 */
export function findSyntaxErrorLine(text: string): number | undefined {
  const lines = text.split(/\r?\n/);
  if (lines.length > MAX_LINES_TO_BISECT) return undefined;
  const parses = (prefix: string) => {
    try {
      Bun.YAML.parse(prefix);
      return true;
    } catch {
      return false;
    }
  };
  let line: number | undefined;
  let budget = MAX_BISECT_BYTES;
  for (let count = lines.length; count >= 1; count--) {
    const prefix = lines.slice(0, count).join("\n");
    budget -= prefix.length;
    if (budget < 0) return undefined;
    if (parses(prefix)) break;
    line = count;
  }
  // Trailing blank or comment lines cannot be the cause; report the last meaningful one.
  while (line !== undefined && line > 1 && /^\s*(#.*)?$/.test(lines[line - 1] ?? "")) line--;
  return line;
}
