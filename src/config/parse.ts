/**
 * dso.yaml text → resolved DsoConfig. Steps: YAML (Bun.YAML) → line index → legacy shorthand
 * rewrite → `${VAR}` expansion → per-section valibot schemas → resolve against defaults.
 * Each section is checked on its own so one mistake does not hide the others: every problem
 * in the file is reported at once.
 */
import * as v from "valibot";
import { FALLBACK_MESSAGE, IssueCollector, describeKind } from "./collect.ts";
import { type Env, expandEnvInTree } from "./env-expand.ts";
import { findIgnoredKeys, isIgnoredPath } from "./ignored.ts";
import { ConfigError, type ConfigIssue, sortIssues } from "./issues.ts";
import { rewriteLegacySecretShapes, rewriteOctalModes } from "./legacy.ts";
import { type InvalidSecret, type ParsedSections, resolveConfig, webhookUrlProblem } from "./resolve.ts";
import {
  AgentSchema,
  DefaultsSchema,
  ProviderSchema,
  SecretSchema,
  SharedOutputSchema,
  LegacyV1Schema,
  NotificationsSchema,
  TopLevelKeysSchema,
  VersionSchema,
  INJECT_TYPES,
  providerNameField,
  type InjectType,
  type ProviderInput,
} from "./schema.ts";
import type { DsoConfig } from "./types.ts";
import { applyProviderRules } from "./provider-rules.ts";
import { isTemplateTextPath } from "./outputs.ts";
import { indexYamlLines } from "./yaml-lines.ts";
import { locateYamlSyntaxError } from "./yaml-syntax.ts";
import { aliasProblem } from "./yaml-aliases.ts";
import { isMapping } from "../util/is-mapping.ts";

const PARSE_OPTIONS = { abortEarly: false, message: FALLBACK_MESSAGE } as const;


function readYaml(text: string, file: string): unknown {
  try {
    return Bun.YAML.parse(text);
  } catch (error) {
    const detail = (error instanceof Error ? error.message : String(error)).replace(/^YAML Parse error:\s*/, "");
    const { line, column, message } = locateYamlSyntaxError(text, detail);
    throw new ConfigError([{ file, line, ...(column === undefined ? {} : { column }), path: "", message: `YAML syntax error: ${message}` }]);
  }
}

function parseSection<T extends v.GenericSchema>(
  schema: T,
  value: unknown,
  prefix: (string | number)[],
  issues: IssueCollector,
): v.InferOutput<T> | undefined {
  const result = v.safeParse(schema, value, PARSE_OPTIONS);
  if (result.success) return result.output;
  issues.addValibotIssues(prefix, schema, result.issues);
  return undefined;
}

function parseProviders(raw: unknown, issues: IssueCollector): Pick<ParsedSections, "providers" | "declaredProviders"> {
  const providers = new Map<string, ProviderInput>();
  const declaredProviders = new Set<string>();
  if (raw === undefined || raw === null) return { providers, declaredProviders };
  if (!isMapping(raw)) {
    issues.error(["providers"], `must be a mapping of provider names to settings, not ${describeKind(raw)}`);
    return { providers, declaredProviders };
  }
  for (const [name, value] of Object.entries(raw)) {
    declaredProviders.add(name);
    if (!v.is(providerNameField, name)) {
      issues.error(["providers", name], "provider names use letters, digits, '.', '_' and '-', starting with a letter or digit");
      continue;
    }
    const parsed = parseSection(ProviderSchema, value, ["providers", name], issues);
    if (parsed) providers.set(name, parsed);
  }
  return { providers, declaredProviders };
}

function parseSecrets(raw: unknown, issues: IssueCollector): ParsedSections["secrets"] {
  if (raw === undefined || raw === null) return [];
  // The Go DSO's README writes `secrets: {}` for "none"; read it that way.
  if (isMapping(raw) && Object.keys(raw).length === 0) return [];
  if (!Array.isArray(raw)) {
    issues.error(["secrets"], `must be a list (- name: ... items), not ${describeKind(raw)}`);
    return [];
  }
  return raw.map((item, index) => {
    const parsed = parseSection(SecretSchema, item, ["secrets", index], issues);
    if (parsed) return parsed;
    // Still check the provider and mapping names of an invalid secret, so one pass shows every problem.
    return invalidSecretParts(item);
  });
}

function parseNotifications(raw: unknown, issues: IssueCollector): ParsedSections["notifications"] {
  if (raw == null) return undefined;
  const parsed = parseSection(NotificationsSchema, raw, ["notifications"], issues);
  if (parsed || !isMapping(raw) || !Array.isArray(raw.webhooks)) return parsed;
  // The section has other errors; still check each URL, so one pass shows every problem.
  const insecure = raw.allow_insecure_http === true || raw.allow_insecure_http === "true";
  raw.webhooks.forEach((hook, index) => {
    const url = isMapping(hook) ? hook.url : undefined;
    const problem = typeof url === "string" ? webhookUrlProblem(url, insecure) : undefined;
    if (problem) issues.error(["notifications", "webhooks", index, "url"], problem);
  });
  return undefined;
}

/** What can still be checked of a secret that failed its schema. */
function invalidSecretParts(item: unknown): InvalidSecret {
  if (!isMapping(item)) return { invalid: true, provider: undefined, mappings: undefined, injectType: undefined };
  const provider = typeof item.provider === "string" ? item.provider : undefined;
  const rawMappings = item.mappings;
  const mappings =
    isMapping(rawMappings) && Object.entries(rawMappings).every(([k, value]) => k !== "" && typeof value === "string")
      ? (rawMappings as Record<string, string>)
      : undefined;
  const rawType = isMapping(item.inject) ? item.inject.type : undefined;
  const injectType = (INJECT_TYPES as readonly unknown[]).includes(rawType) ? (rawType as InjectType) : undefined;
  return { invalid: true, provider, mappings, injectType };
}

/**
 * Parses and resolves dso.yaml text. `file` is used in messages and to resolve a relative file-provider
 * path against its directory. Throws ConfigError with
 * every problem found; returns warnings (ignored keys, legacy spellings) otherwise.
 */
export function parseConfig(
  text: string,
  file: string,
  env: Env = process.env,
): { config: DsoConfig; warnings: ConfigIssue[] } {
  const issues = new IssueCollector(file);
  let doc = readYaml(text, file);
  issues.index = indexYamlLines(text);
  if (doc === null || doc === undefined) doc = {};
  if (!isMapping(doc)) {
    issues.error([], `the file must hold one mapping (providers:, secrets:, ...), not ${describeKind(doc)} or several documents`);
    throw new ConfigError(issues.errors);
  }
  // Before anything walks the document: a cyclic or alias-bombed one would never finish.
  const aliases = aliasProblem(doc);
  if (aliases) {
    issues.error(aliases.path, aliases.message);
    throw new ConfigError(issues.errors);
  }
  for (const dup of issues.index.duplicates) {
    issues.error(dup.path, `duplicate key (first written on line ${dup.firstLine})`, dup.line);
  }
  const rewritten = rewriteOctalModes(rewriteLegacySecretShapes(doc, issues), issues);
  const expansion = expandEnvInTree(rewritten, env, (path) => isIgnoredPath(path) || isTemplateTextPath(path));
  issues.expanded = expansion.expanded;
  for (const problem of expansion.problems) issues.error(problem.path, problem.message);
  const expanded = expansion.value as Record<string, unknown>;
  for (const ignored of findIgnoredKeys(expanded)) issues.warn(ignored.path, ignored.message);

  parseSection(TopLevelKeysSchema, expanded, [], issues);
  const sections: ParsedSections = {
    version: parseSection(VersionSchema, expanded, [], issues)?.version,
    legacy: parseSection(LegacyV1Schema, expanded, [], issues),
    legacyProviderName: typeof expanded.provider === "string" ? expanded.provider : undefined,
    ...parseProviders(expanded.providers, issues),
    agent: expanded.agent == null ? undefined : parseSection(AgentSchema, expanded.agent, ["agent"], issues),
    notifications: parseNotifications(expanded.notifications, issues),
    defaults: expanded.defaults == null ? undefined : parseSection(DefaultsSchema, expanded.defaults, ["defaults"], issues),
    secrets: parseSecrets(expanded.secrets, issues),
    ...(expanded.templates == null ? {} : { templates: parseSection(v.array(SharedOutputSchema, "must be a list of templates"), expanded.templates, ["templates"], issues) }),
  };
  const config = resolveConfig(sections, issues);
  applyProviderRules(config, file, issues);
  if (issues.errors.length > 0) throw new ConfigError(issues.errors, issues.warnings);
  return { config, warnings: sortIssues(issues.warnings) };
}
