/**
 * The one check of a `providers.<name>` block against its descriptor: unknown keys in `config`
 * and `auth.params`, an unknown `auth.method`. `dso config validate` reports every problem with
 * its dso.yaml line before anything runs; the provider process runs the same check at configure.
 */
import { ProviderError } from "./errors.ts";
import type { ProviderDescriptor } from "./types.ts";

export interface BlockProblem {
  /** Below `providers.<name>`, e.g. `config.adress`. */
  path: string;
  message: string;
}

export interface ProviderBlock {
  config: Readonly<Record<string, unknown>>;
  auth?: { method?: string; params?: Readonly<Record<string, unknown>> };
}

export function providerBlockProblems(descriptor: ProviderDescriptor, block: ProviderBlock): BlockProblem[] {
  const problems: BlockProblem[] = [];
  const known = (keys: readonly string[]) => (keys.length ? ` (known: ${keys.join(", ")})` : " (it takes none)");
  for (const key of Object.keys(block.config)) {
    if (!descriptor.configKeys.includes(key)) problems.push({ path: `config.${key}`, message: `unknown key for the ${descriptor.type} provider${known(descriptor.configKeys)}` });
  }
  for (const key of Object.keys(block.auth?.params ?? {})) {
    if (!descriptor.authParamKeys.includes(key)) problems.push({ path: `auth.params.${key}`, message: `unknown key for the ${descriptor.type} provider${known(descriptor.authParamKeys)}` });
  }
  const method = block.auth?.method;
  if (method !== undefined && descriptor.authMethods.length > 0 && !descriptor.authMethods.includes(method)) {
    problems.push({ path: "auth.method", message: `"${method.slice(0, 40)}" is not one of ${descriptor.authMethods.join(", ")}` });
  }
  return problems;
}

/** Inside the provider: the first problem as a CONFIG_INVALID naming the field. */
export function assertProviderBlock(descriptor: ProviderDescriptor, name: string, block: ProviderBlock): void {
  const [first] = providerBlockProblems(descriptor, block);
  if (first) throw new ProviderError("CONFIG_INVALID", `providers.${name}.${first.path}: ${first.message}`);
}
