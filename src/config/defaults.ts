/** Every default of dso.yaml in one place; docs/configuration.md lists the same values. */
import type { AgentConfig, DefaultsConfig, DsoConfig, NotificationsConfig, ProviderConfig, RetrySpec } from "./types.ts";

export const SYSTEM_CONFIG_PATH = "/etc/dso/dso.yaml";
export const LOCAL_CONFIG_NAME = "dso.yaml";
export const BUILTIN_PROVIDER_NAME = "file";
export const BUILTIN_FILE_PROVIDER_PATH = "/etc/dso/secrets";
export const DEFAULT_SOCKET_PATH = "/run/docker/plugins/dso.sock";
/**
 * The control API for agent.socket_group members: /run/docker is 0700 root on a standard host, so
 * they cannot reach DEFAULT_SOCKET_PATH; this directory is 0750 <agent uid>:<group>.
 */
export const DEFAULT_GROUP_SOCKET_PATH = "/run/dso/control/dso.sock";
export const DEFAULT_VOLUMES_ROOT = "/run/dso/volumes";
/** The Go DSO's REST address, where its webhook lived. */
export const DEFAULT_WEBHOOK_LISTEN = "127.0.0.1:8471";

const MINUTE_MS = 60_000;
/** The Go DSO's notification defaults: 10 s timeout, 2 retries. */
export const DEFAULT_NOTIFICATION_TIMEOUT_MS = 10_000;
export const DEFAULT_NOTIFICATION_RETRIES = 2;
export const DEFAULT_NOTIFICATION_QUEUE = 100;

export const DEFAULT_RETRY: RetrySpec = { attempts: 3, backoffMs: 2000 };

export function defaultAgentConfig(): AgentConfig {
  return {
    cache: false,
    socket: DEFAULT_SOCKET_PATH,
    groupSocket: DEFAULT_GROUP_SOCKET_PATH,
    volumesRoot: DEFAULT_VOLUMES_ROOT,
    metrics: { enabled: false },
    audit: { enabled: false, output: "stderr" },
    leakSentinel: { enabled: false },
    watch: { pollingIntervalMs: 5 * MINUTE_MS, webhook: { enabled: false, listen: DEFAULT_WEBHOOK_LISTEN } },
    rotation: { signal: "SIGHUP", healthCheckTimeoutMs: MINUTE_MS },
  };
}

export function defaultNotifications(): NotificationsConfig {
  return {
    enabled: false,
    webhooks: [],
    queueSize: DEFAULT_NOTIFICATION_QUEUE,
  };
}

export function defaultDefaults(): DefaultsConfig {
  return {
    inject: { type: "file", path: "/run/secrets", uid: 0, gid: 0, mode: 0o400 },
    rotation: { enabled: false, strategy: "restart" },
  };
}

/**
 * The provider used when dso.yaml declares none: files under /etc/dso/secrets. It serves names
 * dso.yaml does not declare (the zero-config "Try it" of the README asks for secrets by label
 * only); a secret dso.yaml declares is still bound by its targets.
 */
export function builtinFileProvider(): ProviderConfig {
  return {
    name: BUILTIN_PROVIDER_NAME,
    type: "file",
    auth: { params: {} },
    config: { path: BUILTIN_FILE_PROVIDER_PATH },
    retry: { ...DEFAULT_RETRY },
    allowUndeclared: true,
  };
}

/** What DSO runs with when there is no dso.yaml at all. */
export function builtinDefaultConfig(): DsoConfig {
  return {
    version: 2,
    providers: { [BUILTIN_PROVIDER_NAME]: builtinFileProvider() },
    agent: defaultAgentConfig(),
    notifications: defaultNotifications(),
    defaults: defaultDefaults(),
    secrets: [],
  };
}
