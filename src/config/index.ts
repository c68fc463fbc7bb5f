/** dso.yaml: find, read, validate and resolve. See docs/configuration.md. */
export { ConfigError, formatIssue, type ConfigIssue } from "./issues.ts";
export { parseConfig } from "./parse.ts";
export { findConfigPath, loadConfig, type FindConfigOptions } from "./load.ts";
export {
  builtinDefaultConfig,
  SYSTEM_CONFIG_PATH,
  BUILTIN_FILE_PROVIDER_PATH,
  DEFAULT_SOCKET_PATH,
  DEFAULT_GROUP_SOCKET_PATH,
  DEFAULT_VOLUMES_ROOT,
} from "./defaults.ts";
export { parseDuration, formatDuration } from "./duration.ts";
export { envNameProblem } from "./resolve.ts";
export { fileNameProblem } from "../util/file-rules.ts";
export { PROVIDER_TYPES, STRATEGY_NAMES, INJECT_TYPES, SIGNAL_NAMES, NOTIFICATION_EVENTS } from "./schema.ts";
export type {
  AgentConfig,
  DefaultsConfig,
  DsoConfig,
  EnvInjectSpec,
  FileInjectSpec,
  InjectSpec,
  InjectType,
  NotificationEvent,
  NotificationsConfig,
  ProviderConfig,
  ProviderType,
  RetrySpec,
  RotationSpec,
  SecretSpec,
  SignalName,
  StrategyName,
  TargetSpec,
  WebhookTarget,
} from "./types.ts";
