/**
 * The renderer: evaluates a parsed template over the secrets of one delivery and writes the result
 * into one owned buffer of exactly its size (segments.ts). Text comes from the template; values
 * are views into the fetched bytes or scratch buffers of functions, wiped before render returns.
 * A missing key, a bad call or an oversized result is a TemplateError naming file:line and the
 * key or function; nothing is returned then, so no file is written.
 */
import { TemplateError } from "./errors.ts";
import { CallProblem, fieldOf, functionsFor, truthy, type CallContext, type Value } from "./functions.ts";
import type { SecretMap } from "./formats.ts";
import type { Command, Node, Operand, ParsedTemplate, Pipeline } from "./parse.ts";

type ControlNode = Extract<Node, { body: Node[] }>;
import { MAX_OUTPUT_BYTES, segmentSize, wipeOwned, writeSegments, type Segment } from "./segments.ts";

/** Evaluation steps per render: a template whose nested ranges would do more is refused, not run. */
export const MAX_STEPS = 100_000;

const encoder = new TextEncoder();

export interface RenderInput {
  /** Dot at the top of the template (the output's own secret). */
  root: { name: string; map: SecretMap };
  /** Every secret of this delivery, for `secret "name"`. */
  secrets: ReadonlyMap<string, SecretMap>;
}

class Evaluation {
  readonly segments: Segment[] = [];
  readonly scratch: Uint8Array[] = [];
  private size = 0;
  private steps = 0;
  private readonly scopes: Map<string, Value>[] = [];
  private readonly fns: ReturnType<typeof functionsFor>;

  constructor(
    private readonly template: ParsedTemplate,
    private readonly input: RenderInput,
  ) {
    const ctx: CallContext = {
      secret: (name) => input.secrets.get(name),
      materialize: (segments) => {
        const bytes = writeSegments(segments);
        if (!bytes) throw new CallProblem(`a function's result is larger than ${MAX_OUTPUT_BYTES} bytes`);
        this.scratch.push(bytes);
        return bytes;
      },
    };
    this.fns = functionsFor(ctx);
    const root: Value = { kind: "secret", name: input.root.name, map: input.root.map };
    this.scopes.push(new Map([["$", root]]));
  }

  private fail(line: number, problem: string): never {
    throw new TemplateError(this.template.origin, line, problem);
  }

  private step(line: number): void {
    if (++this.steps > MAX_STEPS) this.fail(line, `the template does more than ${MAX_STEPS} steps (nested range?)`);
  }

  private emit(segment: Segment, line: number): void {
    this.size += segmentSize(segment);
    if (this.size > MAX_OUTPUT_BYTES) this.fail(line, `the output is larger than ${MAX_OUTPUT_BYTES} bytes`);
    this.segments.push(segment);
  }

  private variable(name: string, line: number): Value {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const v = this.scopes[i]!.get(name);
      if (v) return v;
    }
    return this.fail(line, `undefined variable ${name}`);
  }

  run(nodes: readonly Node[], dot: Value): void {
    for (const node of nodes) {
      this.step(node.kind === "text" ? 0 : node.line);
      if (node.kind === "text") {
        if (node.bytes.length) this.emit(node.bytes, 0);
        continue;
      }
      if (node.kind === "action") {
        const v = this.pipeline(node.pipe, dot);
        if (node.pipe.declare.length === 0) this.print(v, node.line);
        continue;
      }
      this.scopes.push(new Map());
      try {
        if (node.kind === "range") this.range(node, dot);
        else {
          const v = this.pipeline(node.pipe, dot);
          if (truthy(v)) this.run(node.body, node.kind === "with" ? v : dot);
          else this.run(node.otherwise, dot);
        }
      } finally {
        this.scopes.pop();
      }
    }
  }

  private range(node: ControlNode, dot: Value): void {
    const v = this.pipeline({ ...node.pipe, declare: [] }, dot);
    if (v.kind === "missing") this.fail(node.line, `${v.what} not found`);
    if (v.kind !== "secret") this.fail(node.line, "range: only a whole secret (such as . or secret \"name\") can be ranged over");
    if (v.map.size === 0) return this.run(node.otherwise, dot);
    const [first, second] = node.pipe.declare;
    for (const key of [...v.map.keys()].sort()) {
      const element: Value = { kind: "bytes", bytes: v.map.get(key)! };
      const scope = this.scopes.at(-1)!;
      if (second !== undefined) {
        scope.set(first!, { kind: "bytes", bytes: encoder.encode(key) });
        scope.set(second, element);
      } else if (first !== undefined) scope.set(first, element);
      this.run(node.body, element);
    }
  }

  private print(v: Value, line: number): void {
    switch (v.kind) {
      case "bytes":
        return this.emit(v.bytes, line);
      case "number":
      case "bool":
        return this.emit(encoder.encode(String(v.value)), line);
      case "missing":
        return this.fail(line, `${v.what} not found`);
      case "secret":
        return this.fail(line, `secret "${v.name}" is a whole secret: print one key (.key, index . "key") or use toJson, toYaml, toEnv`);
    }
  }

  private pipeline(pipe: Pipeline, dot: Value): Value {
    let piped: Value | undefined;
    for (const command of pipe.commands) piped = this.command(command, dot, piped);
    const result = piped!;
    for (const name of pipe.declare) this.scopes.at(-1)!.set(name, result);
    return result;
  }

  private command(command: Command, dot: Value, piped: Value | undefined): Value {
    this.step(command.line);
    const [head, ...rest] = command.args;
    if (head!.kind !== "call") {
      if (rest.length > 0 || piped !== undefined) this.fail(command.line, "only a function can take arguments (or a piped value)");
      return this.operand(head!, dot);
    }
    const args = rest.map((a) => this.operand(a, dot));
    if (piped !== undefined) args.push(piped);
    try {
      return this.fns[head!.name]!(args);
    } catch (error) {
      if (error instanceof CallProblem) this.fail(command.line, error.message);
      throw error;
    }
  }

  private operand(op: Operand, dot: Value): Value {
    switch (op.kind) {
      case "dot":
        return dot;
      case "field":
        try {
          return fieldOf(op.on ? this.operand(op.on, dot) : dot, op.name);
        } catch (error) {
          if (error instanceof CallProblem) this.fail(op.line, error.message);
          throw error;
        }
      case "var":
        return this.variable(op.name, op.line);
      case "string":
        return { kind: "bytes", bytes: op.bytes };
      case "number":
        return { kind: "number", value: op.value };
      case "bool":
        return { kind: "bool", value: op.value };
      case "call":
        return this.command({ args: [op], line: op.line }, dot, undefined);
      case "pipe":
        return this.pipeline(op.pipe, dot);
    }
  }
}

/**
 * Renders a template into a new owned buffer of exactly the output's size. The caller owns the
 * result and wipes it (wipeOwned) when its window ends. Scratch buffers are wiped here.
 */
export function renderTemplate(template: ParsedTemplate, input: RenderInput): Uint8Array {
  const evaluation = new Evaluation(template, input);
  try {
    evaluation.run(template.nodes, { kind: "secret", name: input.root.name, map: input.root.map });
    const out = writeSegments(evaluation.segments);
    if (!out) throw new TemplateError(template.origin, 1, `the output is larger than ${MAX_OUTPUT_BYTES} bytes`);
    return out;
  } finally {
    for (const bytes of evaluation.scratch) wipeOwned(bytes);
  }
}
