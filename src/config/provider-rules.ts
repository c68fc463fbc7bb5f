/**
 * What loading dso.yaml does with provider blocks beyond their descriptors' checks: a relative
 * file-provider `path` (the Go DSO's `./.secrets`) is resolved against the directory of the
 * dso.yaml that names it, and each descriptor's `configWarnings` (e.g. Vault over plain http to
 * another host) become warnings at the key's line, so a working file keeps loading.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { descriptorOf } from "../../providers/registry.ts";
import type { IssueCollector } from "./collect.ts";
import type { DsoConfig } from "./types.ts";

export function applyProviderRules(config: DsoConfig, file: string, issues: IssueCollector): void {
  for (const [name, provider] of Object.entries(config.providers)) {
    for (const w of descriptorOf(provider.type)?.configWarnings?.(provider.config) ?? []) {
      issues.warn(["providers", name, "config", w.key], w.message);
    }
    const path = provider.config.path;
    if (provider.type === "file" && path && !isAbsolute(path)) {
      (provider.config as Record<string, string>).path = resolve(dirname(resolve(file)), path);
    }
  }
}
