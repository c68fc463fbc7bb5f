/**
 * The template functions. Each takes evaluated arguments (the piped value last, as in Go) and
 * returns a value; derived bytes are written into owned scratch buffers that the render wipes
 * when it ends. None reads a file, the environment or a process: a template sees only the
 * secrets of its delivery. Problems are plain sentences naming a function or a key, never a value.
 */
import { base64DecodedSize, base64DecodeInto, base64Encoder, bytesEqual, indentInto, indentSize, jsonString, queryEscaper, quoted, trimBytes, type Encoder } from "./bytes.ts";
import { FORMATS, formatSegments, type FormatName, type SecretMap } from "./formats.ts";
import type { Segment } from "./segments.ts";

export type Value =
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "secret"; name: string; map: SecretMap }
  | { kind: "missing"; what: string }
  | { kind: "number"; value: number }
  | { kind: "bool"; value: boolean };

export interface CallContext {
  /** The secret of that name in this delivery, if it is one. */
  secret(name: string): SecretMap | undefined;
  /** Segments written into a scratch buffer the render owns and wipes. */
  materialize(segments: Segment[]): Uint8Array;
}

/** A problem with a call: the renderer adds file:line. */
export class CallProblem extends Error {}

const decoder = new TextDecoder("utf-8", { fatal: true });
const MAX_INDENT = 256;

export function truthy(v: Value): boolean {
  switch (v.kind) {
    case "bytes":
      return v.bytes.length > 0;
    case "secret":
      return v.map.size > 0;
    case "missing":
      return false;
    case "number":
      return v.value !== 0;
    case "bool":
      return v.value;
  }
}

function describe(v: Value): string {
  return v.kind === "missing" ? v.what : v.kind === "secret" ? `secret "${v.name}"` : `a ${v.kind}`;
}

/** Bytes of an argument; a missing key or a whole secret here is the caller's mistake. */
export function bytesOf(v: Value, fn: string): Uint8Array {
  if (v.kind === "bytes") return v.bytes;
  if (v.kind === "missing") throw new CallProblem(`${v.what} not found`);
  if (v.kind === "secret") throw new CallProblem(`${fn}: ${describe(v)} is a whole secret; use toJson, toYaml, toEnv or index`);
  throw new CallProblem(`${fn}: expected text, got ${describe(v)}`);
}

/** A name given as a literal (a key, a secret): config text, so it may become a JS string. */
function nameOf(v: Value, fn: string): string {
  if (v.kind !== "bytes") throw new CallProblem(`${fn}: expected a name, got ${describe(v)}`);
  try {
    return decoder.decode(v.bytes);
  } catch {
    throw new CallProblem(`${fn}: a name must be UTF-8`);
  }
}

function arity(fn: string, args: readonly Value[], min: number, max = min): void {
  if (args.length < min || args.length > max) throw new CallProblem(`${fn} takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`);
}

function lookup(container: Value, key: string, fn: string): Value {
  if (container.kind === "missing") throw new CallProblem(`${container.what} not found`);
  if (container.kind !== "secret") throw new CallProblem(`${fn}: cannot read key "${key}" of ${describe(container)}`);
  const bytes = container.map.get(key);
  return bytes ? { kind: "bytes", bytes } : { kind: "missing", what: `key "${key}" of secret "${container.name}"` };
}

export function fieldOf(container: Value, key: string): Value {
  return lookup(container, key, "field");
}

function encode(ctx: CallContext, encoder: Encoder, fn: string) {
  return (args: Value[]): Value => {
    arity(fn, args, 1);
    return { kind: "bytes", bytes: ctx.materialize([{ encoder, input: bytesOf(args[0]!, fn) }]) };
  };
}

function wholeSecret(ctx: CallContext, format: FormatName, fn: string) {
  return (args: Value[]): Value => {
    arity(fn, args, 1);
    const v = args[0]!;
    if (v.kind === "missing") throw new CallProblem(`${v.what} not found`);
    if (v.kind !== "secret") throw new CallProblem(`${fn}: expected a whole secret (such as .), got ${describe(v)}`);
    const segments = formatSegments(format, v.map, false);
    if (typeof segments === "string") throw new CallProblem(`${fn}: ${segments} of secret "${v.name}"`);
    return { kind: "bytes", bytes: ctx.materialize(segments) };
  };
}

type Fn = (args: Value[]) => Value;

export function functionsFor(ctx: CallContext): Record<string, Fn> {
  return {
    index(args) {
      arity("index", args, 2);
      return lookup(args[0]!, nameOf(args[1]!, "index"), "index");
    },
    secret(args) {
      arity("secret", args, 1, 2);
      const name = nameOf(args[0]!, "secret");
      const map = ctx.secret(name);
      if (!map) throw new CallProblem(`secret "${name}" is not delivered with this output (name it in the same target)`);
      const whole: Value = { kind: "secret", name, map };
      return args.length === 2 ? lookup(whole, nameOf(args[1]!, "secret"), "secret") : whole;
    },
    default(args) {
      arity("default", args, 2);
      return truthy(args[1]!) ? args[1]! : args[0]!;
    },
    not(args) {
      arity("not", args, 1);
      return { kind: "bool", value: !truthy(args[0]!) };
    },
    eq(args) {
      arity("eq", args, 2);
      return { kind: "bool", value: bytesEqual(bytesOf(args[0]!, "eq"), bytesOf(args[1]!, "eq")) };
    },
    ne(args) {
      arity("ne", args, 2);
      return { kind: "bool", value: !bytesEqual(bytesOf(args[0]!, "ne"), bytesOf(args[1]!, "ne")) };
    },
    b64enc: encode(ctx, base64Encoder, "b64enc"),
    b64dec(args) {
      arity("b64dec", args, 1);
      const input = bytesOf(args[0]!, "b64dec");
      const size = base64DecodedSize(input);
      if (size === undefined) throw new CallProblem("b64dec: the input is not standard base64");
      return { kind: "bytes", bytes: ctx.materialize([{ size, write: (out, at) => base64DecodeInto(input, out, at) }]) };
    },
    urlquery: encode(ctx, queryEscaper, "urlquery"),
    json: encode(ctx, jsonString, "json"),
    quote: encode(ctx, quoted, "quote"),
    trim(args) {
      arity("trim", args, 1);
      return { kind: "bytes", bytes: trimBytes(bytesOf(args[0]!, "trim")) };
    },
    indent(args) {
      arity("indent", args, 2);
      const n = args[0]!;
      if (n.kind !== "number" || n.value < 0 || n.value > MAX_INDENT) throw new CallProblem(`indent: the first argument must be a number of spaces from 0 to ${MAX_INDENT}`);
      const input = bytesOf(args[1]!, "indent");
      return { kind: "bytes", bytes: ctx.materialize([{ size: indentSize(input, n.value), write: (out, at) => indentInto(input, n.value, out, at) }]) };
    },
    toJson: wholeSecret(ctx, "json", "toJson"),
    toYaml: wholeSecret(ctx, "yaml", "toYaml"),
    toEnv: wholeSecret(ctx, "env", "toEnv"),
    toProperties: wholeSecret(ctx, "properties", "toProperties"),
  };
}

/** Every function name, for the parser (an unknown name is a parse error, found by `config validate`). */
export const FUNCTION_NAMES: ReadonlySet<string> = new Set(Object.keys(functionsFor({ secret: () => undefined, materialize: () => new Uint8Array(0) })));

export { FORMATS };
