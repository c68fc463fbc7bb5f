/**
 * The template parser: a documented subset of Go's text/template (docs/templates.md) turned into a
 * small tree. Text between actions is kept as bytes; actions hold pipelines of commands over
 * fields (`.key`), variables (`$`, `$name`), string and number literals and the functions of
 * functions.ts. Control: if / else if / else, with / else, range / else, end; comments; `{{-` and
 * `-}}` trim the whitespace beside them. Every node carries its line, so an error can name
 * file:line. The parser never sees a secret value: only the template text.
 */
import { FUNCTION_NAMES } from "./functions.ts";
import { TemplateError, type TemplateOrigin } from "./errors.ts";

/** A template longer than this is refused (it is config, not data). */
export const MAX_TEMPLATE_BYTES = 256 * 1024;
/** Nesting of control structures and parentheses: deeper is refused, so parsing cannot blow the stack. */
export const MAX_DEPTH = 64;

export type Operand =
  | { kind: "dot"; line: number }
  | { kind: "field"; name: string; on?: Operand; line: number }
  | { kind: "var"; name: string; line: number }
  | { kind: "string"; bytes: Uint8Array; line: number }
  | { kind: "number"; value: number; line: number }
  | { kind: "bool"; value: boolean; line: number }
  | { kind: "call"; name: string; line: number }
  | { kind: "pipe"; pipe: Pipeline; line: number };

export interface Command {
  args: Operand[];
  line: number;
}

export interface Pipeline {
  /** `$a := …` or `$k, $v := …` (range). */
  declare: string[];
  commands: Command[];
  line: number;
}

export type Node =
  | { kind: "text"; bytes: Uint8Array }
  | { kind: "action"; pipe: Pipeline; line: number }
  | { kind: "if" | "with" | "range"; pipe: Pipeline; body: Node[]; otherwise: Node[]; line: number };

export interface ParsedTemplate {
  nodes: Node[];
  origin: TemplateOrigin;
}

export interface Delimiters {
  left: string;
  right: string;
}

export const DEFAULT_DELIMITERS: Delimiters = { left: "{{", right: "}}" };

const encoder = new TextEncoder();
const SPACE = /[ \t\r\n]/;

type Token =
  | { t: "word"; v: string }
  | { t: "field"; v: string }
  | { t: "var"; v: string; field?: string }
  | { t: "string"; v: Uint8Array }
  | { t: "number"; v: number }
  | { t: "sym"; v: "|" | "(" | ")" | ":=" | "," | "." };

interface Action {
  tokens: Token[];
  line: number;
}

type Piece = { kind: "text"; text: string } | { kind: "action"; action: Action };

/** Splits the template into text and actions, applying trim markers and dropping comments. */
function scan(text: string, delims: Delimiters, fail: (line: number, msg: string) => never): Piece[] {
  const pieces: Piece[] = [];
  let i = 0;
  let line = 1;
  let trimNext = false;
  const countLines = (s: string) => {
    for (const ch of s) if (ch === "\n") line++;
  };
  while (i < text.length) {
    const open = text.indexOf(delims.left, i);
    let chunk = open < 0 ? text.slice(i) : text.slice(i, open);
    const chunkLines = chunk;
    if (trimNext) chunk = chunk.replace(/^[ \t\r\n]+/, "");
    trimNext = false;
    let start = open + delims.left.length;
    const trimLeft = open >= 0 && text[start] === "-" && SPACE.test(text[start + 1] ?? "");
    if (trimLeft) {
      chunk = chunk.replace(/[ \t\r\n]+$/, "");
      start += 1;
    }
    if (chunk) pieces.push({ kind: "text", text: chunk });
    countLines(chunkLines);
    if (open < 0) break;
    const actionLine = line;
    const close = findClose(text, start, delims.right);
    if (close < 0) fail(actionLine, `unclosed action: no ${delims.right}`);
    let end = close;
    if (text[close - 1] === "-" && SPACE.test(text[close - 2] ?? "")) {
      trimNext = true;
      end = close - 1;
    }
    const inner = text.slice(start, end);
    countLines(text.slice(open, close + delims.right.length));
    i = close + delims.right.length;
    const trimmed = inner.trim();
    if (trimmed.startsWith("/*")) {
      if (!trimmed.endsWith("*/") || trimmed.length < 4) fail(actionLine, "unclosed comment");
      continue;
    }
    pieces.push({ kind: "action", action: { tokens: lex(inner, actionLine, fail), line: actionLine } });
  }
  return pieces;
}

/** The closing delimiter of an action, skipping over string literals (which may contain it). */
function findClose(text: string, from: number, right: string): number {
  let i = from;
  while (i < text.length) {
    const ch = text[i]!;
    if (text.startsWith(right, i)) return i;
    if (ch === '"') {
      i++;
      while (i < text.length && text[i] !== '"' && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
    } else if (ch === "`") {
      const end = text.indexOf("`", i + 1);
      if (end < 0) return -1;
      i = end;
    }
    i++;
  }
  return -1;
}

const IDENT = /[A-Za-z0-9_]/;

function lex(src: string, line: number, fail: (line: number, msg: string) => never): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (SPACE.test(ch)) {
      if (ch === "\n") line++;
      i++;
      continue;
    }
    if (ch === "|" || ch === "(" || ch === ")" || ch === ",") {
      tokens.push({ t: "sym", v: ch });
      i++;
      continue;
    }
    if (src.startsWith(":=", i)) {
      tokens.push({ t: "sym", v: ":=" });
      i += 2;
      continue;
    }
    if (ch === ".") {
      let j = i + 1;
      while (j < src.length && IDENT.test(src[j]!)) j++;
      if (j === i + 1) tokens.push({ t: "sym", v: "." });
      else tokens.push({ t: "field", v: src.slice(i + 1, j) });
      i = j;
      continue;
    }
    if (ch === "$") {
      let j = i + 1;
      while (j < src.length && IDENT.test(src[j]!)) j++;
      const name = src.slice(i, j);
      let k = j;
      if (src[j] === ".") {
        k = j + 1;
        while (k < src.length && IDENT.test(src[k]!)) k++;
      }
      // `$var.key`: a field of a variable (one level, as secrets are flat).
      tokens.push(k > j + 1 ? { t: "var", v: name, field: src.slice(j + 1, k) } : { t: "var", v: name });
      i = k > j + 1 ? k : j;
      continue;
    }
    if (ch === '"') {
      const { bytes, end } = readQuoted(src, i, line, fail);
      tokens.push({ t: "string", v: bytes });
      i = end;
      continue;
    }
    if (ch === "`") {
      const end = src.indexOf("`", i + 1);
      if (end < 0) fail(line, "unterminated raw string");
      tokens.push({ t: "string", v: encoder.encode(src.slice(i + 1, end)) });
      for (const c of src.slice(i, end)) if (c === "\n") line++;
      i = end + 1;
      continue;
    }
    if (/[0-9-]/.test(ch)) {
      const m = /^-?[0-9]{1,6}/.exec(src.slice(i));
      if (!m || IDENT.test(src[i + m[0].length] ?? "")) fail(line, "bad number (integers of up to 6 digits)");
      tokens.push({ t: "number", v: Number(m[0]) });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_]/.test(ch)) {
      let j = i;
      while (j < src.length && IDENT.test(src[j]!)) j++;
      tokens.push({ t: "word", v: src.slice(i, j) });
      i = j;
      continue;
    }
    fail(line, `unexpected character ${JSON.stringify(ch)} in action`);
  }
  return tokens;
}

const ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\", "0": "\0" };

function readQuoted(src: string, start: number, line: number, fail: (line: number, msg: string) => never): { bytes: Uint8Array; end: number } {
  let out = "";
  let i = start + 1;
  while (i < src.length && src[i] !== '"') {
    const ch = src[i]!;
    if (ch === "\n") fail(line, "newline in string literal");
    if (ch !== "\\") {
      out += ch;
      i++;
      continue;
    }
    const next = src[i + 1] ?? "";
    if (next in ESCAPES) {
      out += ESCAPES[next];
      i += 2;
    } else if (next === "x" && /^[0-9a-fA-F]{2}$/.test(src.slice(i + 2, i + 4))) {
      out += String.fromCharCode(parseInt(src.slice(i + 2, i + 4), 16));
      i += 4;
    } else if (next === "u" && /^[0-9a-fA-F]{4}$/.test(src.slice(i + 2, i + 6))) {
      out += String.fromCharCode(parseInt(src.slice(i + 2, i + 6), 16));
      i += 6;
    } else fail(line, "unknown escape in string literal");
  }
  if (src[i] !== '"') fail(line, "unterminated string literal");
  return { bytes: encoder.encode(out), end: i + 1 };
}

/** Parses a template; throws TemplateError naming origin file:line. */
export function parseTemplate(text: string, origin: TemplateOrigin, delims: Delimiters = DEFAULT_DELIMITERS): ParsedTemplate {
  const fail = (line: number, msg: string): never => {
    throw new TemplateError(origin, line, msg);
  };
  if (encoder.encode(text).length > MAX_TEMPLATE_BYTES) fail(1, `template is longer than ${MAX_TEMPLATE_BYTES} bytes`);
  const pieces = scan(text, delims, fail);
  let pos = 0;
  const declared: Set<string>[] = [new Set(["$"])];

  const parseList = (depth: number, stop: readonly string[]): { nodes: Node[]; ended: string; line: number; rest: Token[] } => {
    if (depth > MAX_DEPTH) fail(pieces[pos - 1]?.kind === "action" ? (pieces[pos - 1] as { action: Action }).action.line : 1, `nesting deeper than ${MAX_DEPTH}`);
    const nodes: Node[] = [];
    while (pos < pieces.length) {
      const piece = pieces[pos++]!;
      if (piece.kind === "text") {
        nodes.push({ kind: "text", bytes: encoder.encode(piece.text) });
        continue;
      }
      const { tokens, line } = piece.action;
      const head = tokens[0];
      if (!head) fail(line, "empty action");
      const keyword = head!.t === "word" ? head!.v : "";
      if (keyword === "end" || keyword === "else") {
        if (!stop.includes(keyword)) fail(line, `unexpected {{${keyword}}}`);
        if (keyword === "end" && tokens.length > 1) fail(line, "end takes no arguments");
        return { nodes, ended: keyword, line, rest: tokens.slice(1) };
      }
      if (keyword === "if" || keyword === "with" || keyword === "range") {
        nodes.push(parseControl(keyword, tokens.slice(1), line, depth));
        continue;
      }
      if (keyword === "define" || keyword === "template" || keyword === "block" || keyword === "break" || keyword === "continue") {
        fail(line, `{{${keyword}}} is not supported (docs/templates.md)`);
      }
      nodes.push({ kind: "action", pipe: parsePipeline(tokens, line, depth, true), line });
    }
    if (stop.length) fail(lastLine(), "missing {{end}}");
    return { nodes, ended: "", line: lastLine(), rest: [] };
  };

  const lastLine = (): number => {
    for (let k = pieces.length - 1; k >= 0; k--) {
      const p = pieces[k]!;
      if (p.kind === "action") return p.action.line;
    }
    return 1;
  };

  const parseControl = (keyword: "if" | "with" | "range", tokens: Token[], line: number, depth: number): Node => {
    declared.push(new Set());
    const pipe = parsePipeline(tokens, line, depth, keyword !== "if");
    if (pipe.declare.length > (keyword === "range" ? 2 : 1)) fail(line, `too many variables in ${keyword}`);
    if (pipe.commands.length === 0) fail(line, `missing value for ${keyword}`);
    const body = parseList(depth + 1, ["end", "else"]);
    declared.pop();
    let otherwise: Node[] = [];
    if (body.ended === "else") {
      const rest = body.rest;
      if (rest.length > 0) {
        // `else if …` / `else with …`: an else branch holding one nested control, closed by the same end.
        const inner = rest[0]!;
        if (inner.t !== "word" || inner.v !== keyword || keyword === "range") fail(body.line, `else takes no arguments here`);
        // The nested control's own {{end}} closes the whole chain, as in Go.
        declared.push(new Set());
        otherwise = [parseControl(keyword, rest.slice(1), body.line, depth + 1)];
        declared.pop();
        return { kind: keyword, pipe, body: body.nodes, otherwise, line };
      }
      declared.push(new Set());
      const tail = parseList(depth + 1, ["end"]);
      declared.pop();
      otherwise = tail.nodes;
    }
    return { kind: keyword, pipe, body: body.nodes, otherwise, line };
  };

  const parsePipeline = (tokens: Token[], line: number, depth: number, allowDeclare: boolean): Pipeline => {
    let k = 0;
    const declare: string[] = [];
    const assign = tokens.findIndex((t) => t.t === "sym" && t.v === ":=");
    if (assign >= 0) {
      if (!allowDeclare) fail(line, "variables cannot be declared in if");
      const names = tokens.slice(0, assign);
      for (let n = 0; n < names.length; n++) {
        const tok = names[n]!;
        if (n % 2 === 0 && tok.t === "var" && tok.v !== "$") declare.push(tok.v);
        else if (n % 2 === 1 && tok.t === "sym" && tok.v === ",") continue;
        else fail(line, "bad variable declaration");
      }
      k = assign + 1;
    }
    const { commands, end } = parseCommands(tokens, k, line, depth, false);
    if (end !== tokens.length) fail(line, "unexpected ) in action");
    for (const name of declare) declared.at(-1)!.add(name);
    return { declare, commands, line };
  };

  const isDeclared = (name: string) => declared.some((scope) => scope.has(name));

  const parseCommands = (tokens: Token[], start: number, line: number, depth: number, inParen: boolean): { commands: Command[]; end: number } => {
    if (depth > MAX_DEPTH) fail(line, `nesting deeper than ${MAX_DEPTH}`);
    const commands: Command[] = [];
    let args: Operand[] = [];
    let k = start;
    const flush = () => {
      if (args.length === 0) fail(line, "missing command in pipeline");
      commands.push({ args, line });
      args = [];
    };
    while (k < tokens.length) {
      const tok = tokens[k]!;
      if (tok.t === "sym" && tok.v === ")") {
        if (!inParen) fail(line, "unexpected )");
        flush();
        return { commands, end: k };
      }
      if (tok.t === "sym" && tok.v === "|") {
        flush();
        k++;
        continue;
      }
      if (tok.t === "sym" && tok.v === "(") {
        const inner = parseCommands(tokens, k + 1, line, depth + 1, true);
        if (tokens[inner.end]?.t !== "sym") fail(line, "missing )");
        args.push({ kind: "pipe", pipe: { declare: [], commands: inner.commands, line }, line });
        k = inner.end + 1;
        continue;
      }
      args.push(operandOf(tok, line));
      k++;
    }
    if (inParen) fail(line, "missing )");
    if (args.length) flush();
    return { commands, end: k };
  };

  const operandOf = (tok: Token, line: number): Operand => {
    switch (tok.t) {
      case "field":
        return { kind: "field", name: tok.v, line };
      case "var":
        if (!isDeclared(tok.v)) fail(line, `undefined variable ${tok.v}`);
        return tok.field === undefined ? { kind: "var", name: tok.v, line } : { kind: "field", name: tok.field, on: { kind: "var", name: tok.v, line }, line };
      case "string":
        return { kind: "string", bytes: tok.v, line };
      case "number":
        return { kind: "number", value: tok.v, line };
      case "sym":
        if (tok.v === ".") return { kind: "dot", line };
        return fail(line, `unexpected ${tok.v}`);
      case "word":
        if (tok.v === "true" || tok.v === "false") return { kind: "bool", value: tok.v === "true", line };
        if (tok.v === "nil") return fail(line, "nil is not supported");
        if (!FUNCTION_NAMES.has(tok.v)) fail(line, `unknown function "${tok.v}"`);
        return { kind: "call", name: tok.v, line };
    }
  };

  const { nodes } = parseList(0, []);
  return { nodes, origin };
}
