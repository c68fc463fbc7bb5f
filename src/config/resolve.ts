/**
 * Turns the parsed sections into the resolved DsoConfig: legacy v1 provider, provider type
 * aliases, each secret's provider, inject and rotation merged with defaults, mapping names
 * checked against the inject type. Reports into the collector; never throws.
 */
import { providerBlockProblems } from "../../providers/block-check.ts";
import { fileNameProblem } from "../util/file-rules.ts";
import { resolveLease } from "./lease-spec.ts";
import { suggestKey } from "./collect.ts";
import { descriptorOf } from "../../providers/registry.ts";
import type { IssueCollector } from "./collect.ts";
import type { TreePath } from "./env-expand.ts";
import {
  BUILTIN_PROVIDER_NAME,
  DEFAULT_NOTIFICATION_RETRIES,
  DEFAULT_NOTIFICATION_TIMEOUT_MS,
  DEFAULT_RETRY,
  builtinFileProvider,
  defaultAgentConfig,
  defaultDefaults,
  defaultNotifications,
} from "./defaults.ts";
import type {
  AgentInput,
  DefaultsInput,
  InjectType,
  NotificationsInput,
  ProviderInput,
  SecretInput,
  StrategyName,
  LegacyV1Input,
} from "./schema.ts";
import * as v from "valibot";
import { finishOutputs, resolveSecretOutputs, resolveSharedOutputs } from "./outputs.ts";
import type { OutputInput } from "./schema.ts";
import { AUDIT_STDERR, NOTIFICATION_EVENTS, PROVIDER_TYPES, STRATEGY_INPUTS, providerNameField } from "./schema.ts";
import type {
  AgentConfig,
  DefaultsConfig,
  DsoConfig,
  InjectSpec,
  NotificationEvent,
  NotificationsConfig,
  ProviderConfig,
  ProviderType,
  RotationSpec,
  SecretSpec,
  WebhookTarget,
} from "./types.ts";

const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MIN_WEBHOOK_TOKEN_LENGTH = 16;

export interface InvalidSecret {
  invalid: true;
  provider: string | undefined;
  /** The secret's `mappings` when they are a mapping of strings, so their names are still checked. */
  mappings: Record<string, string> | undefined;
  /** `inject.type` when it is a known type (else the default applies). */
  injectType: InjectType | undefined;
}

/** Each section as parsed by its schema; undefined when the section is absent or invalid. */
export interface ParsedSections {
  version: 1 | 2 | undefined;
  legacy: LegacyV1Input | undefined;
  /** The v1 `provider:` value when it is a string, even if its section is invalid. */
  legacyProviderName: string | undefined;
  /** Names under `providers:` that parsed, by name. */
  providers: Map<string, ProviderInput>;
  /** Every name written under `providers:`, valid or not (so secrets do not report it missing). */
  declaredProviders: Set<string>;
  agent: AgentInput | undefined;
  notifications: NotificationsInput | undefined;
  defaults: DefaultsInput | undefined;
  /** Parsed secrets by index; entries that failed their schema keep only their provider name. */
  secrets: (SecretInput | InvalidSecret)[];
  /** Top-level templates reading several secrets. */
  templates?: OutputInput[];
}

type StrategyInput = (typeof STRATEGY_INPUTS)[number];

function resolveStrategy(value: StrategyInput, path: TreePath, issues: IssueCollector): StrategyName {
  if (value !== "auto") return value;
  issues.warn(path, 'strategy "auto" is deprecated and resolves to "restart"; write restart, rolling, signal or none');
  return "restart";
}

/** Provider type as written (including the `local` alias); undefined when refused. */
function resolveProviderType(type: string, path: TreePath, issues: IssueCollector): ProviderType | undefined {
  if (type === "local") {
    issues.warn(path, 'provider type "local" is the old name of "file"; reading it as file');
    return "file";
  }
  if (type === "huawei") {
    issues.error(path, `provider type "huawei" is not supported by this DSO (supported: ${PROVIDER_TYPES.join(", ")})`);
    return undefined;
  }
  if ((PROVIDER_TYPES as readonly string[]).includes(type)) return type as ProviderType;
  issues.error(path, `must be one of ${PROVIDER_TYPES.join(", ")}${issues.got(type, path)}`);
  return undefined;
}

/** The provider's own descriptor checks its config and auth keys and values, each problem at its line. */
function checkProviderBlock(type: ProviderType, at: TreePath, block: { config: Record<string, string>; auth: { method?: string; params: Record<string, string> } }, issues: IssueCollector): void {
  const descriptor = descriptorOf(type);
  if (!descriptor) return;
  for (const problem of providerBlockProblems(descriptor, block)) {
    const path = problem.path.split(".");
    // A value that already failed (an unset ${VAR}) is not judged again.
    const dotted = [...at, ...path].join(".");
    if (issues.errors.some((issue) => issue.path === dotted)) continue;
    const typed = path[0] === "auth" && path[1] === "method" ? (block.auth.method ?? "") : path.at(-1)!;
    const suggestion = problem.known ? suggestKey(typed, problem.known) : undefined;
    issues.error([...at, ...path], suggestion ? `${problem.message}; did you mean "${suggestion}"?` : problem.message);
  }
}

function providerFrom(name: string, input: ProviderInput, issues: IssueCollector): ProviderConfig | undefined {
  const type = resolveProviderType(input.type, ["providers", name, "type"], issues);
  if (!type) return undefined;
  checkProviderBlock(type, ["providers", name], { config: input.config ?? {}, auth: { method: input.auth?.method, params: input.auth?.params ?? {} } }, issues);
  const source = input.events ? eventSourceOf(name, type, input.events, issues) : undefined;
  return {
    name,
    type,
    ...(input.region === undefined ? {} : { region: input.region }),
    auth: { ...(input.auth?.method === undefined ? {} : { method: input.auth.method }), params: input.auth?.params ?? {} },
    config: input.config ?? {},
    retry: {
      attempts: input.retry?.attempts ?? DEFAULT_RETRY.attempts,
      backoffMs: input.retry?.backoff ?? DEFAULT_RETRY.backoffMs,
    },
    ...(input.timeout === undefined ? {} : { timeoutMs: input.timeout }),
    allowUndeclared: input.allow_undeclared ?? false,
    ...(input.events && source ? { events: { queue: source, maxAgeMs: input.events.max_age ?? DEFAULT_EVENTS_MAX_AGE_MS } } : {}),
  };
}

/** The key each provider type reads its change events from: a queue URL, or a Pub/Sub subscription. */
const EVENT_SOURCE_KEY: Partial<Record<ProviderType, "queue" | "subscription">> = { aws: "queue", azure: "queue", gcp: "subscription" };

/** `providers.<name>.events`: the one source key this provider type reads (the other refused at its line). */
function eventSourceOf(name: string, type: ProviderType, events: { queue?: string; subscription?: string }, issues: IssueCollector): string | undefined {
  const at = ["providers", name, "events"];
  const wanted = EVENT_SOURCE_KEY[type];
  if (!wanted) {
    issues.error(at, `change events are read for aws (SQS), azure (Storage queue) and gcp (Pub/Sub) providers, not ${type}`);
    return undefined;
  }
  const other = wanted === "queue" ? "subscription" : "queue";
  if (events[other] !== undefined) {
    issues.error([...at, other], wanted === "queue" ? `${type} reads change events from a queue URL (events.queue), not a Pub/Sub subscription` : "gcp reads change events from a Pub/Sub pull subscription (events.subscription: projects/<project>/subscriptions/<id>), not a queue URL");
    return undefined;
  }
  const value = events[wanted];
  if (value === undefined) issues.error(at, wanted === "queue" ? `${type} needs events.queue (the queue's https URL)` : "gcp needs events.subscription (projects/<project>/subscriptions/<id>)");
  return value;
}

/** `providers.*.events.max_age`: how old the oldest queued event may be before `dso doctor` warns. */
export const DEFAULT_EVENTS_MAX_AGE_MS = 5 * 60_000;

/** v1: `provider: vault` plus `config:` and `region:` at the top level become providers.vault. */
function legacyProvider(top: LegacyV1Input, declared: Set<string>, issues: IssueCollector): ProviderConfig | undefined {
  if (top.provider === undefined) {
    if (top.config !== undefined) issues.error(["config"], "a top-level config needs a top-level provider (v1 format); or move it to providers.<name>.config");
    if (top.region !== undefined) issues.error(["region"], "a top-level region needs a top-level provider (v1 format); or move it to providers.<name>.region");
    return undefined;
  }
  if (declared.has(top.provider)) {
    issues.warn(["provider"], `ignored: providers.${top.provider} is already defined`);
    return undefined;
  }
  const type = resolveProviderType(top.provider, ["provider"], issues);
  if (!type) return undefined;
  checkProviderBlock(type, [], { config: top.config ?? {}, auth: { params: {} } }, issues);
  return {
    name: top.provider,
    type,
    ...(top.region === undefined ? {} : { region: top.region }),
    auth: { params: {} },
    config: top.config ?? {},
    retry: { ...DEFAULT_RETRY },
    allowUndeclared: false,
  };
}

export function resolveProviders(sections: ParsedSections, issues: IssueCollector): {
  providers: Record<string, ProviderConfig>;
  names: Set<string>;
} {
  const providers: Record<string, ProviderConfig> = {};
  const names = new Set(sections.declaredProviders);
  for (const [name, input] of sections.providers) {
    const provider = providerFrom(name, input, issues);
    if (provider) providers[name] = provider;
  }
  const legacy = sections.legacy ? legacyProvider(sections.legacy, sections.declaredProviders, issues) : undefined;
  if (legacy) providers[legacy.name] = legacy;
  if (sections.legacyProviderName !== undefined) names.add(sections.legacyProviderName);
  if (names.size === 0) {
    providers[BUILTIN_PROVIDER_NAME] = builtinFileProvider();
    names.add(BUILTIN_PROVIDER_NAME);
  }
  return { providers, names };
}

export function resolveAgent(input: AgentInput | undefined, issues: IssueCollector): AgentConfig {
  const agent = defaultAgentConfig();
  if (!input) return agent;
  const webhook = input.watch?.webhook;
  const webhookPath = ["agent", "watch", "webhook"];
  if (webhook?.enabled && !webhook.auth_token) {
    issues.error([...webhookPath, "auth_token"], "is required when the webhook is enabled");
  } else if (webhook?.enabled && webhook.auth_token && webhook.auth_token.length < MIN_WEBHOOK_TOKEN_LENGTH) {
    issues.warn([...webhookPath, "auth_token"], `is shorter than ${MIN_WEBHOOK_TOKEN_LENGTH} characters; use a long random token`);
  }
  const strategy = input.rotation?.strategy;
  const metricsListen = input.metrics?.listen;
  if (metricsListen !== undefined && !isLoopback(metricsListen.slice(0, metricsListen.lastIndexOf(":")))) {
    issues.warn(["agent", "metrics", "listen"], "is not a loopback address: anyone who can reach it reads secret names, container names and versions (no auth)");
  }
  return {
    cache: input.cache ?? agent.cache,
    metrics: {
      // A listener is asked for explicitly: it turns metrics on.
      enabled: input.metrics?.enabled ?? metricsListen !== undefined,
      ...(metricsListen === undefined ? {} : { listen: metricsListen }),
    },
    audit: {
      enabled: input.audit?.enabled ?? input.audit?.output !== undefined,
      output: input.audit?.output ?? AUDIT_STDERR,
    },
    leakSentinel: { enabled: input.leak_sentinel?.enabled ?? agent.leakSentinel.enabled },
    socket: input.socket ?? agent.socket,
    groupSocket: input.group_socket ?? agent.groupSocket,
    volumesRoot: input.volumes_root ?? agent.volumesRoot,
    ...(input.socket_group === undefined ? {} : { socketGroup: input.socket_group }),
    watch: {
      pollingIntervalMs: input.watch?.polling_interval ?? agent.watch.pollingIntervalMs,
      webhook: {
        enabled: webhook?.enabled ?? false,
        listen: webhook?.listen ?? agent.watch.webhook.listen,
        ...(webhook?.auth_token === undefined ? {} : { authToken: webhook.auth_token }),
      },
    },
    rotation: {
      ...(strategy === undefined ? {} : { strategy: resolveStrategy(strategy, ["agent", "rotation", "strategy"], issues) }),
      signal: input.rotation?.signal ?? agent.rotation.signal,
      healthCheckTimeoutMs: input.rotation?.health_check_timeout ?? agent.rotation.healthCheckTimeoutMs,
    },
  };
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The Go DSO's recovery_* events: DSO never rolls a container back, so there is nothing to send. */
function knownEvents(events: readonly string[] | undefined, path: TreePath, issues: IssueCollector): NotificationEvent[] | undefined {
  // The Go DSO: "empty = all events".
  if (events === undefined || events.length === 0) return undefined;
  const dropped = events.filter((e) => !(NOTIFICATION_EVENTS as readonly string[]).includes(e));
  if (dropped.length > 0) issues.warn(path, `${dropped.join(", ")}: never sent (DSO does not roll containers back); events DSO sends: ${NOTIFICATION_EVENTS.join(", ")}`);
  return events.filter((e): e is NotificationEvent => (NOTIFICATION_EVENTS as readonly string[]).includes(e));
}

/** Webhook URLs may carry tokens: messages about them never quote the URL. */
export function webhookUrlProblem(url: string, allowInsecureHttp: boolean): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "must be an http(s) URL";
  }
  if (parsed.protocol === "https:") return undefined;
  if (parsed.protocol !== "http:") return "must be an http(s) URL";
  if (allowInsecureHttp || isLoopback(parsed.hostname)) return undefined;
  return "is plain http to a non-loopback host: use https, or set notifications.allow_insecure_http: true";
}

type WebhookInput = NonNullable<NotificationsInput["webhooks"]>[number];

/** A webhook's own `events`, `timeout`, `max_retries`, `allow_insecure_http` win over the top-level ones (the Go DSO sets them per webhook). */
function resolveWebhook(hook: WebhookInput, index: number, input: NotificationsInput, allEvents: NotificationEvent[], issues: IssueCollector): WebhookTarget | undefined {
  const path = ["notifications", "webhooks", index];
  const problem = webhookUrlProblem(hook.url, hook.allow_insecure_http ?? input.allow_insecure_http ?? false);
  if (problem) {
    issues.error([...path, "url"], problem);
    return undefined;
  }
  return {
    url: hook.url,
    events: knownEvents(hook.events, [...path, "events"], issues) ?? allEvents,
    headers: hook.headers ?? {},
    timeoutMs: hook.timeout ?? input.timeout ?? DEFAULT_NOTIFICATION_TIMEOUT_MS,
    maxRetries: Math.max(0, hook.max_retries ?? input.max_retries ?? DEFAULT_NOTIFICATION_RETRIES),
  };
}

export function resolveNotifications(input: NotificationsInput | undefined, issues: IssueCollector): NotificationsConfig {
  const notifications = defaultNotifications();
  if (!input) return notifications;
  const allEvents = knownEvents(input.events, ["notifications", "events"], issues) ?? [...NOTIFICATION_EVENTS];
  const webhooks = (input.webhooks ?? []).flatMap((hook, index) => resolveWebhook(hook, index, input, allEvents, issues) ?? []);
  const enabled = input.enabled ?? false;
  if (!enabled && webhooks.length > 0) {
    issues.warn(["notifications"], "webhooks are configured but notifications.enabled is not true: nothing is sent");
  }
  return { enabled, webhooks, queueSize: input.queue_size ?? notifications.queueSize };
}

export function resolveDefaults(input: DefaultsInput | undefined, issues: IssueCollector): DefaultsConfig {
  const defaults = defaultDefaults();
  if (!input) return defaults;
  const strategy = input.rotation?.strategy;
  return {
    inject: {
      type: input.inject?.type ?? defaults.inject.type,
      path: input.inject?.path ?? defaults.inject.path,
      uid: input.inject?.uid ?? defaults.inject.uid,
      gid: input.inject?.gid ?? defaults.inject.gid,
      mode: input.inject?.mode ?? defaults.inject.mode,
    },
    rotation: {
      enabled: input.rotation?.enabled ?? defaults.rotation.enabled,
      strategy: strategy === undefined ? defaults.rotation.strategy : resolveStrategy(strategy, ["defaults", "rotation", "strategy"], issues),
    },
  };
}


export function envNameProblem(name: string): string | undefined {
  return ENV_NAME_PATTERN.test(name) ? undefined : "must be a variable name: letters, digits and _, not starting with a digit";
}

/** Names a Go DSO user writes for environment variables: DB_PASSWORD, API_KEY. */
const ENV_LIKE_KEY = /^[A-Z_][A-Z0-9_]*$/;

/**
 * The Go DSO's docs template writes `ENV_NAME: secret/id`, the other way round from what its code
 * (and DSO) reads. When a key looks like a variable name and its target is not a valid name,
 * say that the sides look swapped.
 */
function swappedHint(key: string, target: string, path: TreePath, issues: IssueCollector): string {
  if (!ENV_LIKE_KEY.test(key) || envNameProblem(target) === undefined) return "";
  const shown = issues.show(target, path) !== undefined;
  const inner = shown ? target.split("/").filter(Boolean).at(-1) : undefined;
  const example = inner && /^[A-Za-z0-9_.-]+$/.test(inner) ? `${inner}: ${key}` : `<key>: ${key}`;
  return `; the two sides look swapped: mappings are <key inside the secret>: <name>, e.g. ${example} (the Go DSO's docs template writes them the other way round)`;
}

function checkMappings(mappings: Record<string, string>, index: number, injectType: InjectType, issues: IssueCollector): Record<string, string> {
  const seen = new Map<string, string>();
  for (const [key, target] of Object.entries(mappings)) {
    const path = ["secrets", index, "mappings", key];
    const problem = injectType === "env" ? envNameProblem(target) : fileNameProblem(target);
    if (problem) issues.error(path, `${problem}${issues.got(target, path)}${swappedHint(key, target, path, issues)}`);
    const other = seen.get(target);
    if (other !== undefined) issues.error(path, `maps to the same ${injectType === "env" ? "variable" : "file"} as "${other}"`);
    else seen.set(target, key);
  }
  return mappings;
}

function resolveInject(secret: SecretInput, index: number, defaults: DefaultsConfig, issues: IssueCollector): InjectSpec {
  const given = secret.inject ?? {};
  const type = given.type ?? defaults.inject.type;
  const injectPath = ["secrets", index, "inject"];
  if (type === "env") {
    for (const field of ["path", "uid", "gid", "mode"] as const) {
      if (given[field] !== undefined) issues.warn([...injectPath, field], "ignored for inject type env");
    }
    if (secret.path !== undefined) issues.warn(["secrets", index, "path"], "ignored for inject type env");
    return { type: "env" };
  }
  return {
    type: "file",
    path: given.path ?? secret.path ?? defaults.inject.path,
    uid: given.uid ?? defaults.inject.uid,
    gid: given.gid ?? defaults.inject.gid,
    mode: given.mode ?? defaults.inject.mode,
  };
}

function resolveRotation(secret: SecretInput, index: number, defaults: DefaultsConfig, agent: AgentConfig, issues: IssueCollector): RotationSpec {
  const own = secret.rotation;
  const legacyType = secret.reload_strategy?.type;
  const ownStrategy = own?.strategy === undefined ? undefined : resolveStrategy(own.strategy, ["secrets", index, "rotation", "strategy"], issues);
  const legacyStrategy = legacyType === undefined ? undefined : resolveStrategy(legacyType, ["secrets", index, "reload_strategy", "type"], issues);
  return {
    enabled: own?.enabled ?? (legacyType !== undefined ? true : defaults.rotation.enabled),
    strategy: ownStrategy ?? legacyStrategy ?? defaults.rotation.strategy,
    signal: own?.signal ?? agent.rotation.signal,
    healthCheckTimeoutMs: own?.health_check_timeout ?? agent.rotation.healthCheckTimeoutMs,
  };
}

function pickProvider(secret: { provider?: string | undefined }, index: number, allNames: Set<string>, issues: IssueCollector): string | undefined {
  const path = ["secrets", index, "provider"];
  // Invalid provider names have their own error; listing them raw put a tab into this one (found by test/fuzz).
  const names = new Set([...allNames].filter((name) => v.is(providerNameField, name)));
  if (names.size === 0 || (secret.provider !== undefined && allNames.has(secret.provider) && !names.has(secret.provider))) return undefined;
  if (secret.provider !== undefined) {
    if (names.has(secret.provider)) return secret.provider;
    const shown = issues.show(secret.provider, path);
    const what = shown ? `no provider named ${shown} is configured` : "names a provider that is not configured";
    issues.error(path, `${what} (configured: ${[...names].join(", ")})`);
    return undefined;
  }
  if (names.size === 1) return [...names][0];
  issues.error(path, `is required when more than one provider is configured (${[...names].join(", ")})`);
  return undefined;
}

/** The type written for a provider name (a v1 file's top-level `provider:` too); undefined when unknown. */
function providerTypeOf(sections: ParsedSections, name: string): string | undefined {
  return sections.providers.get(name)?.type ?? (name === sections.legacyProviderName ? sections.legacy?.provider : undefined);
}

export function resolveSecrets(
  sections: ParsedSections,
  names: Set<string>,
  defaults: DefaultsConfig,
  agent: AgentConfig,
  issues: IssueCollector,
): SecretSpec[] {
  const out: SecretSpec[] = [];
  sections.secrets.forEach((secret, index) => {
    if ("invalid" in secret) {
      // Its other problems are reported already; report these too, so one pass shows everything.
      if (secret.provider !== undefined) pickProvider(secret, index, names, issues);
      if (secret.mappings) checkMappings(secret.mappings, index, secret.injectType ?? defaults.inject.type, issues);
      return;
    }
    const provider = pickProvider(secret, index, names, issues);
    const inject = resolveInject(secret, index, defaults, issues);
    const mappings = checkMappings(secret.mappings ?? {}, index, inject.type, issues);
    const rotation = resolveRotation(secret, index, defaults, agent, issues);
    if (provider === undefined) return;
    const lease = secret.dynamic && resolveLease(secret, index, providerTypeOf(sections, provider), issues);
    out.push({
      name: secret.name,
      ...(secret.version === undefined ? {} : { version: secret.version }),
      ...(secret.stage === undefined ? {} : { stage: secret.stage }),
      provider,
      inject,
      targets: { containers: secret.targets?.containers ?? [], labels: secret.targets?.labels ?? {}, volumes: secret.targets?.volumes ?? [] },
      mappings,
      rotation,
      ...(lease ? { lease } : {}),
    });
    resolveSecretOutputs(out.at(-1)!, secret.templates, index, issues);
  });
  return out;
}

export function resolveConfig(sections: ParsedSections, issues: IssueCollector): DsoConfig {
  const { providers, names } = resolveProviders(sections, issues);
  const agent = resolveAgent(sections.agent, issues);
  const notifications = resolveNotifications(sections.notifications, issues);
  const defaults = resolveDefaults(sections.defaults, issues);
  const secrets = resolveSecrets(sections, names, defaults, agent, issues);
  resolveSharedOutputs(secrets, sections.templates, issues);
  finishOutputs(secrets, issues);
  const version = sections.version ?? (sections.legacyProviderName !== undefined ? 1 : 2);
  return { version, providers, agent, notifications, defaults, secrets };
}
