/**
 * The one check of a `providers.<name>` block against its descriptor: unknown keys in `config`
 * and `auth.params`, their values (the descriptor's valibot schemas), an unknown `auth.method`.
 * `dso config validate` and `dso doctor` report every problem with its dso.yaml line before
 * anything runs; the provider process runs the same check at configure and parses its settings
 * with the same schemas (parseBlock), so each rule is written once.
 */
import * as v from "valibot";
import { ProviderError } from "./errors.ts";
import type { BlockSchema, ProviderDescriptor } from "./types.ts";

export interface BlockProblem {
  /** Below `providers.<name>`, e.g. `config.adress`. */
  path: string;
  message: string;
  /** For an unknown key or method: what is known, for a "did you mean". */
  known?: readonly string[];
}

export interface ProviderBlock {
  config: Readonly<Record<string, unknown>>;
  auth?: { method?: string; params?: Readonly<Record<string, unknown>> };
}

/** The keys a block schema takes. */
export function blockKeys(schema: BlockSchema): string[] {
  return Object.keys(schema.entries);
}

function blockProblems(type: string, section: string, schema: BlockSchema, values: Readonly<Record<string, unknown>>): BlockProblem[] {
  const keys = blockKeys(schema);
  const problems: BlockProblem[] = [];
  const known = keys.length ? ` (known: ${keys.join(", ")})` : " (it takes none)";
  for (const key of Object.keys(values)) {
    if (!keys.includes(key)) problems.push({ path: `${section}.${key}`, message: `unknown key for the ${type} provider${known}`, known: keys });
  }
  const parsed = v.safeParse(schema, values);
  if (parsed.success) return problems;
  for (const issue of parsed.issues) {
    const key = issue.path?.[0]?.key;
    problems.push({ path: typeof key === "string" ? `${section}.${key}` : section, message: issue.message });
  }
  return problems;
}

export function providerBlockProblems(descriptor: ProviderDescriptor, block: ProviderBlock): BlockProblem[] {
  const problems = [
    ...blockProblems(descriptor.type, "config", descriptor.config, block.config),
    ...blockProblems(descriptor.type, "auth.params", descriptor.authParams, block.auth?.params ?? {}),
  ];
  const method = block.auth?.method;
  if (method !== undefined && descriptor.authMethods.length > 0 && !descriptor.authMethods.includes(method)) {
    problems.push({ path: "auth.method", message: `"${method.slice(0, 40)}" is not one of ${descriptor.authMethods.join(", ")}`, known: descriptor.authMethods });
  }
  return problems;
}

/** Inside the provider: the first problem as a CONFIG_INVALID naming the field. */
export function assertProviderBlock(descriptor: ProviderDescriptor, name: string, block: ProviderBlock): void {
  const [first] = providerBlockProblems(descriptor, block);
  if (first) throw new ProviderError("CONFIG_INVALID", `providers.${name}.${first.path}: ${first.message}`);
}

/**
 * Inside the provider: a block's values as its schema's output (URLs parsed, booleans and numbers
 * converted), or CONFIG_INVALID naming the first bad field. `at` is the block's dso.yaml path,
 * e.g. `providers.hv.config`.
 */
export function parseBlock<S extends BlockSchema>(schema: S, at: string, values: Readonly<Record<string, unknown>>): v.InferOutput<S> {
  const parsed = v.safeParse(schema, values);
  if (parsed.success) return parsed.output;
  const [issue] = parsed.issues;
  const key = issue.path?.[0]?.key;
  throw new ProviderError("CONFIG_INVALID", `${typeof key === "string" ? `${at}.${key}` : at}: ${issue.message}`);
}

/** One value read from elsewhere (the environment) checked by a block schema's entry; `field` names it. */
export function parseValue<S extends v.GenericSchema<string, unknown>>(schema: S, field: string, raw: string): v.InferOutput<S> {
  const parsed = v.safeParse(schema, raw);
  if (parsed.success) return parsed.output;
  throw new ProviderError("CONFIG_INVALID", `${field}: ${parsed.issues[0].message}`);
}
