/**
 * valibot schemas for each section of dso.yaml as written (after `${VAR}` expansion and the
 * path-preserving legacy rewrites in legacy.ts). They check shapes and scalar formats
 * and convert durations to ms and modes to numbers; cross-field rules (which provider a secret
 * uses, name rules that depend on the inject type) live in resolve.ts.
 *
 * Messages here never include the offending value: parse.ts appends it when it is safe to show.
 */
import * as v from "valibot";
import { FORMATS } from "../templates/formats.ts";
import { providerTypes } from "../../providers/registry.ts";
import { MAX_NAME_LENGTH } from "../rpc/protocol.ts";
import { FILE_MODE_RULE, MAX_ID, parseFileMode, targetPathProblem } from "../util/file-rules.ts";
import { formatDuration, parseDuration } from "./duration.ts";

/** The provider types of the registry (providers/registry.ts: one line per provider). */
export const PROVIDER_TYPES: readonly string[] = providerTypes();
/** `local` is the Go DSO's older name for `file`; `huawei` is recognised only to refuse it clearly. */
export const PROVIDER_TYPE_INPUTS: readonly string[] = [...PROVIDER_TYPES, "local", "huawei"];
export const STRATEGY_NAMES = ["restart", "signal", "rolling", "none"] as const;
/** `auto` is accepted from Go DSO files and resolved to `restart` with a warning. */
export const STRATEGY_INPUTS = [...STRATEGY_NAMES, "auto"] as const;
export const INJECT_TYPES = ["file", "env"] as const;
/** Outbound notification events (docs/notifications.md). */
export const NOTIFICATION_EVENTS = ["rotation_succeeded", "rotation_failed", "delivery_failed", "provider_unavailable", "provider_recovered"] as const;
/** The Go DSO's recovery_* events describe its container rollback, which DSO does not do: accepted, warned about, never sent. */
export const NOTIFICATION_EVENT_INPUTS = [...NOTIFICATION_EVENTS, "recovery_succeeded", "recovery_failed"] as const;
export const AUDIT_STDERR = "stderr";

export const SIGNAL_NAMES = [
  "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
  "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGCONT",
  "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
  "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
] as const;

const MAX_RETRY_ATTEMPTS = 100;
const MIN_POLLING_INTERVAL_MS = 1000;
const PROVIDER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const listOf = (names: readonly string[]) => names.join(", ");

/** "a list", "a mapping", ... for messages that must not quote the value itself. */
export function describeKind(value: unknown): string {
  if (value === null || value === undefined) return "empty";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return "a number";
  if (typeof value === "boolean") return "a boolean";
  return typeof value;
}

/** A key the Go DSO documents but this DSO does not use: accepted, then warned about. */
export const ignoredKey = () => v.optional(v.unknown());

export const nonEmptyString = (what = "a non-empty string") =>
  v.pipe(v.string(), v.minLength(1, `must be ${what}`));

/** Scalars in string maps (`config.*`, labels, auth params): numbers and booleans become strings. */
export const scalarString = v.pipe(
  v.unknown(),
  v.check(
    (x) => typeof x === "string" || typeof x === "number" || typeof x === "boolean",
    (issue) => `must be a string, not ${describeKind(issue.input)}`,
  ),
  v.transform((x) => String(x)),
);

export const stringMap = v.record(v.string(), scalarString);

export const booleanField = v.pipe(
  v.unknown(),
  v.check((x) => typeof x === "boolean" || x === "true" || x === "false", "must be true or false"),
  v.transform((x) => x === true || x === "true"),
);

/** Integers may come as strings after `${VAR}` expansion. */
export const integerField = (min: number, max: number) =>
  v.pipe(
    v.unknown(),
    v.check(
      (x) => (typeof x === "number" && Number.isInteger(x)) || (typeof x === "string" && /^\d+$/.test(x)),
      `must be a whole number from ${min} to ${max}`,
    ),
    v.transform((x) => Number(x)),
    v.check((n) => n >= min && n <= max, `must be a whole number from ${min} to ${max}`),
  );

export const durationField = (minMs = 0) =>
  v.pipe(
    v.unknown(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const ms = parseDuration(dataset.value);
      if (ms === undefined) {
        addIssue({ message: 'must be a duration such as "30s", "5m", "1h30m", "250ms" or a number of seconds' });
        return NEVER;
      }
      if (ms < minMs) {
        addIssue({ message: `must be at least ${formatDuration(minMs)}` });
        return NEVER;
      }
      return ms;
    }),
  );

/** File mode, octal as for chmod: "0400", "400", "0o400". Special bits are refused. */
export const modeField = v.pipe(
  v.unknown(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const x = dataset.value;
    const mode = typeof x === "string" || typeof x === "number" ? parseFileMode(x) : undefined;
    if (mode === undefined) {
      addIssue({ message: `must be ${FILE_MODE_RULE}` });
      return NEVER;
    }
    return mode;
  }),
);

export const signalField = v.pipe(
  v.string("must be a signal name such as SIGHUP"),
  v.transform((s) => {
    const upper = s.trim().toUpperCase();
    return upper.startsWith("SIG") ? upper : `SIG${upper}`;
  }),
  v.picklist(SIGNAL_NAMES, `must be a signal name such as SIGHUP or SIGUSR1`),
);

export const strategyField = v.picklist(STRATEGY_INPUTS, `must be one of ${listOf(STRATEGY_INPUTS)}`);
export const injectTypeField = v.picklist(INJECT_TYPES, `must be one of ${listOf(INJECT_TYPES)}`);

export const absolutePathField = v.pipe(
  v.string("must be an absolute path"),
  v.check((p) => p.startsWith("/"), "must be an absolute path"),
  v.check((p) => !p.split("/").includes(".."), 'must not contain ".."'),
  v.check((p) => !/[\u0000-\u001f\u007f]/.test(p), "must not contain control characters"),
);

/** Where secrets go inside a container: the one rule delivery applies (util/file-rules.ts). */
export const targetPathField = v.pipe(
  v.string("must be an absolute path"),
  v.check((p) => targetPathProblem(p) === undefined, (issue) => targetPathProblem(issue.input as string) ?? "is not a target path"),
);

export const versionField = v.pipe(
  v.unknown(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const match = /^v?([0-9]+)(?:\.[0-9]+)*$/i.exec(String(dataset.value).trim());
    const major = match ? Number(match[1]) : undefined;
    if ((typeof dataset.value !== "string" && typeof dataset.value !== "number") || (major !== 1 && major !== 2)) {
      addIssue({ message: 'must be 1 or 2 (also written "1", "v1", "v2")' });
      return NEVER;
    }
    return major as 1 | 2;
  }),
);

export const providerNameField = v.pipe(
  v.string(),
  v.regex(PROVIDER_NAME_PATTERN, "provider names use letters, digits, '.', '_' and '-', starting with a letter or digit"),
);

export const ProviderSchema = v.strictObject({
  type: v.picklist(PROVIDER_TYPE_INPUTS, `must be one of ${listOf(PROVIDER_TYPES)}`),
  region: v.optional(nonEmptyString()),
  auth: v.optional(
    v.strictObject({
      method: v.optional(nonEmptyString()),
      params: v.optional(stringMap),
    }),
  ),
  retry: v.optional(
    v.strictObject({
      attempts: v.optional(integerField(1, MAX_RETRY_ATTEMPTS)),
      backoff: v.optional(durationField()),
    }),
  ),
  timeout: v.optional(durationField(100)),
  /** Serve names dso.yaml does not declare (labels, DSO volumes, dso inject). */
  allow_undeclared: v.optional(booleanField),
  config: v.optional(stringMap),
  /** Change detection by push (docs/configuration.md): the queue the cloud's change events land in. */
  events: v.optional(
    v.strictObject({
      /** aws, azure: the queue's URL. */
      queue: v.optional(v.pipe(v.string("must be the queue's https URL"), v.regex(/^https?:\/\/[^\s/]+\/\S*$/, "must be the queue's https URL"), v.maxLength(2048))),
      /** gcp: the Pub/Sub pull subscription's resource name. */
      subscription: v.optional(
        v.pipe(
          v.string("must be projects/<project>/subscriptions/<subscription>"),
          v.regex(/^projects\/[a-z0-9.:-]{1,100}\/subscriptions\/[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$/, "must be projects/<project>/subscriptions/<subscription>"),
        ),
      ),
      max_age: v.optional(durationField(1000)),
    }),
  ),
});

export const InjectSchema = v.strictObject({
  type: v.optional(injectTypeField),
  path: v.optional(targetPathField),
  uid: v.optional(integerField(0, MAX_ID)),
  gid: v.optional(integerField(0, MAX_ID)),
  mode: v.optional(modeField),
});

const hostPortField = v.pipe(
  v.string("must be host:port"),
  v.regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port, such as 127.0.0.1:9464"),
);

export const AgentSchema = v.strictObject({
  cache: v.optional(booleanField),
  metrics: v.optional(
    v.strictObject({
      enabled: v.optional(booleanField),
      listen: v.optional(hostPortField),
    }),
  ),
  audit: v.optional(
    v.strictObject({
      enabled: v.optional(booleanField),
      output: v.optional(
        v.pipe(
          v.string('must be "stderr" or an absolute file path'),
          v.check((x) => x === AUDIT_STDERR || (x.startsWith("/") && !x.split("/").includes("..")), 'must be "stderr" or an absolute file path'),
        ),
      ),
    }),
  ),
  leak_sentinel: v.optional(v.strictObject({ enabled: v.optional(booleanField) })),
  socket: v.optional(absolutePathField),
  group_socket: v.optional(absolutePathField),
  socket_group: v.optional(v.pipe(scalarString, v.minLength(1, "must be a group name or id"))),
  volumes_root: v.optional(absolutePathField),
  watch: v.optional(
    v.strictObject({
      polling_interval: v.optional(durationField(MIN_POLLING_INTERVAL_MS)),
      webhook: v.optional(
        v.strictObject({
          enabled: v.optional(booleanField),
          auth_token: v.optional(v.string("must be a string")),
          listen: v.optional(
            v.pipe(v.string("must be host:port"), v.regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port, such as 127.0.0.1:8471")),
          ),
          endpoint: ignoredKey(),
        }),
      ),
      mode: ignoredKey(),
    }),
  ),
  rotation: v.optional(
    v.strictObject({
      strategy: v.optional(strategyField),
      signal: v.optional(signalField),
      health_check_timeout: v.optional(durationField(1)),
      enabled: ignoredKey(),
      max_parallel: ignoredKey(),
    }),
  ),
  refresh_interval: ignoredKey(),
  auto_sync: ignoredKey(),
  restart_strategy: ignoredKey(),
  webhook: ignoredKey(),
});

export const DefaultsSchema = v.strictObject({
  inject: v.optional(InjectSchema),
  rotation: v.optional(
    v.strictObject({
      enabled: v.optional(booleanField),
      strategy: v.optional(strategyField),
      signal: ignoredKey(),
      health_check_timeout: ignoredKey(),
    }),
  ),
});

export const RotationSchema = v.strictObject({
  enabled: v.optional(booleanField),
  strategy: v.optional(strategyField),
  signal: v.optional(signalField),
  health_check_timeout: v.optional(durationField(1)),
});

export const LEASE_SCOPES = ["container", "shared"] as const;
export type LeaseScope = (typeof LEASE_SCOPES)[number];
/** `<engine mount, one or more segments>/(creds|issue)/<role>`. */
export const DYNAMIC_PATH = /^([A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*)\/(creds|issue)\/([A-Za-z0-9_.-]+)$/;
/** The PKI issue parameters of Vault's API (`POST /v1/pki/issue/:name`). */
export const PKI_ISSUE_PARAMS = [
  "common_name", "alt_names", "ip_sans", "uri_sans", "other_sans", "ttl", "format",
  "private_key_format", "exclude_cn_from_sans", "not_after", "user_ids", "remove_roots_from_chain",
] as const;

/** A share of the lease: `0.67`, `"67%"`; strictly between 0 and 1. */
const shareField = v.pipe(
  v.unknown(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const x = dataset.value;
    const match = typeof x === "string" ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(x) : undefined;
    const share = typeof x === "number" ? x : match ? Number(match[1]) / 100 : Number.NaN;
    if (!(share > 0 && share < 1)) {
      addIssue({ message: 'must be a share of the lease between 0 and 1, such as 0.67 or "67%"' });
      return NEVER;
    }
    return share;
  }),
);

export const DynamicSchema = v.strictObject({
  path: v.pipe(v.string("must be a path"), v.regex(DYNAMIC_PATH, 'must be "<engine>/creds/<role>" or "<engine>/issue/<role>" (PKI)')),
  params: v.optional(stringMap),
  scope: v.optional(v.picklist(LEASE_SCOPES, `must be one of ${LEASE_SCOPES.join(", ")}`)),
  renew_at: v.optional(shareField),
  reissue_margin: v.optional(shareField),
  revoke_on_remove: v.optional(booleanField),
  revoke_grace: v.optional(durationField()),
});

/** One output of a secret (docs/templates.md): a file or variable from a template or in a format. */
const outputEntries = {
  file: v.optional(nonEmptyString("a file name")),
  env: v.optional(nonEmptyString("a variable name")),
  template: v.optional(v.string("must be the template text")),
  template_file: v.optional(nonEmptyString("a template file's path")),
  format: v.optional(v.picklist(FORMATS, `must be one of ${listOf(FORMATS)}`)),
  delimiters: v.optional(v.tuple([nonEmptyString("a left delimiter"), nonEmptyString("a right delimiter")], "must be two strings, e.g. [\"[[\", \"]]\"]")),
  uid: v.optional(integerField(0, MAX_ID)),
  gid: v.optional(integerField(0, MAX_ID)),
  mode: v.optional(modeField),
};
export const OutputSchema = v.strictObject(outputEntries);
/** A top-level template: reads several secrets, delivered with the first. */
export const SharedOutputSchema = v.strictObject({ ...outputEntries, secrets: v.pipe(v.array(nonEmptyString("a secret name")), v.minLength(1, "must name at least one secret")) });
export type OutputInput = v.InferOutput<typeof OutputSchema> & { secrets?: string[] };

export const SecretSchema = v.strictObject({
  name: v.pipe(nonEmptyString("the secret's name at the provider"), v.maxLength(MAX_NAME_LENGTH, `must be at most ${MAX_NAME_LENGTH} characters (the provider protocol's limit)`)),
  provider: v.optional(nonEmptyString("a provider name")),
  /** Pin a version id (AWS VersionId, Vault KV v2 version, Azure version). */
  version: v.optional(v.pipe(scalarString, v.minLength(1, "must not be empty"))),
  /** Pin a staging label (AWS only, e.g. AWSPREVIOUS). */
  stage: v.optional(v.pipe(scalarString, v.minLength(1, "must not be empty"))),
  inject: v.optional(InjectSchema),
  /** v1: the file path, next to `inject: file`. */
  path: v.optional(targetPathField),
  targets: v.optional(
    v.strictObject({
      containers: v.optional(v.array(nonEmptyString("a container name or id"))),
      labels: v.optional(stringMap),
      volumes: v.optional(v.array(nonEmptyString("a DSO volume name"))),
    }),
  ),
  mappings: v.optional(v.record(v.pipe(v.string(), v.minLength(1, "keys must not be empty")), v.string("must be a file or variable name"))),
  rotation: v.optional(RotationSchema),
  templates: v.optional(v.array(OutputSchema)),
  /** v1: `reload_strategy: {type: signal}` sets the strategy and turns rotation on. */
  reload_strategy: v.optional(v.strictObject({ type: strategyField })),
  /** A Vault secret issued per consumer with a lease (lease-spec.ts). */
  dynamic: v.optional(DynamicSchema),
});

/** Top level: only decides which keys exist; each section is parsed on its own. */
export const TopLevelKeysSchema = v.strictObject({
  version: v.optional(v.unknown()),
  providers: v.optional(v.unknown()),
  agent: v.optional(v.unknown()),
  defaults: v.optional(v.unknown()),
  secrets: v.optional(v.unknown()),
  templates: v.optional(v.unknown()),
  // v1 format
  provider: v.optional(v.unknown()),
  config: v.optional(v.unknown()),
  region: v.optional(v.unknown()),
  // documented by the Go DSO, not used
  mode: ignoredKey(),
  runtime: ignoredKey(),
  logging: ignoredKey(),
  notifications: v.optional(v.unknown()),
  proxy: ignoredKey(),
});

const notificationEventField = v.picklist(NOTIFICATION_EVENT_INPUTS, `must be one of ${listOf(NOTIFICATION_EVENTS)}`);
const MAX_NOTIFICATION_RETRIES = 10;
const MAX_NOTIFICATION_QUEUE = 10_000;

/** −1 = no retries, as in the Go DSO. */
const notificationRetriesField = v.pipe(
  v.unknown(),
  v.check((x) => (typeof x === "number" && Number.isInteger(x)) || (typeof x === "string" && /^-?\d+$/.test(x)), `must be a whole number from -1 to ${MAX_NOTIFICATION_RETRIES}`),
  v.transform((x) => Number(x)),
  v.check((n) => n >= -1 && n <= MAX_NOTIFICATION_RETRIES, `must be a whole number from -1 to ${MAX_NOTIFICATION_RETRIES}`),
);

/** What a webhook may set for itself (the Go DSO sets these per webhook) or inherit from the top level. */
const webhookDeliveryKeys = {
  events: v.optional(v.array(notificationEventField)),
  timeout: v.optional(durationField(1)),
  max_retries: v.optional(notificationRetriesField),
  allow_insecure_http: v.optional(booleanField),
};

/**
 * The Go DSO's `notifications` key (its per-webhook `url`, `timeout`, `max_retries`, `events`,
 * `allow_insecure_http`), plus `headers` per webhook, top-level defaults for the per-webhook keys,
 * and `queue_size`.
 */
export const NotificationsSchema = v.strictObject({
  enabled: v.optional(booleanField),
  webhooks: v.optional(
    v.array(
      v.strictObject({
        url: v.pipe(v.string("must be an http(s) URL"), v.minLength(1, "must be an http(s) URL")),
        headers: v.optional(stringMap),
        ...webhookDeliveryKeys,
      }),
    ),
  ),
  ...webhookDeliveryKeys,
  queue_size: v.optional(integerField(1, MAX_NOTIFICATION_QUEUE)),
});

export const VersionSchema = v.object({ version: v.optional(versionField) });

/** v1: `provider: aws` with `config:` and `region:` at the top level. */
export const LegacyV1Schema = v.object({
  provider: v.optional(nonEmptyString("a provider type")),
  config: v.optional(stringMap),
  region: v.optional(nonEmptyString()),
});

export type ProviderInput = v.InferOutput<typeof ProviderSchema>;
export type InjectInput = v.InferOutput<typeof InjectSchema>;
export type AgentInput = v.InferOutput<typeof AgentSchema>;
export type NotificationsInput = v.InferOutput<typeof NotificationsSchema>;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];
export type DefaultsInput = v.InferOutput<typeof DefaultsSchema>;
export type SecretInput = v.InferOutput<typeof SecretSchema>;
export type DynamicInput = v.InferOutput<typeof DynamicSchema>;
export type RotationInput = v.InferOutput<typeof RotationSchema>;
export type LegacyV1Input = v.InferOutput<typeof LegacyV1Schema>;

export type ProviderType = string;
export type StrategyName = (typeof STRATEGY_NAMES)[number];
export type InjectType = (typeof INJECT_TYPES)[number];
export type SignalName = (typeof SIGNAL_NAMES)[number];
