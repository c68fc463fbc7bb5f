/**
 * Poll budgets of providers whose service has a read quota: Google Secret Manager allows 600
 * metadata reads a minute per project (by default), and a DSO poll costs one per secret. When the
 * secrets of a project, polled every `agent.watch.polling_interval`, need more than the share of
 * it DSO uses, the provider spreads each poll over several intervals (a change shows up later);
 * this check says so before it happens, with the interval that would fit.
 */
import type { DsoConfig } from "../config/types.ts";
import { GCP_METADATA_READS_PER_MINUTE, GCP_QUOTA_SHARE, gcpPollReadsPerMinute } from "../../providers/gcp/descriptor.ts";
import type { CheckResult } from "./types.ts";

export function checkPollQuota(config: DsoConfig | undefined): CheckResult[] {
  if (!config) return [];
  const intervalMs = config.agent.watch.pollingIntervalMs;
  /** project → secrets polled and the quota its providers name (the largest, if they differ). */
  const projects = new Map<string, { refs: Set<string>; quota: number }>();
  for (const provider of Object.values(config.providers)) {
    if (provider.type !== "gcp" || !provider.config.project) continue;
    const quota = Number(provider.config.quota_per_minute) || GCP_METADATA_READS_PER_MINUTE;
    const entry = projects.get(provider.config.project) ?? { refs: new Set<string>(), quota };
    entry.quota = Math.max(entry.quota, quota);
    for (const secret of config.secrets) {
      if (secret.provider === provider.name) entry.refs.add(`${provider.name}\0${secret.name}\0${secret.version ?? ""}`);
    }
    projects.set(provider.config.project, entry);
  }
  return [...projects].map(([project, { refs, quota }]) => {
    const reads = gcpPollReadsPerMinute(refs.size, intervalMs);
    const usable = Math.floor(quota * GCP_QUOTA_SHARE);
    const seconds = Math.round(intervalMs / 1000);
    if (reads <= usable) {
      return { check: "gcp poll quota", status: "ok", detail: `project ${project}: ${refs.size} secret(s) every ${seconds} s need ${reads} metadata reads a minute of ${quota}` };
    }
    const fits = Math.ceil((refs.size * 60) / usable);
    return {
      check: "gcp poll quota",
      status: "warn",
      detail: `project ${project}: ${refs.size} secret(s) every ${seconds} s need ${reads} metadata reads a minute, over the ${usable} DSO uses of its quota of ${quota}; polls will be spread over several intervals (changes seen later). Set agent.watch.polling_interval to ${fits}s or more, or raise the quota with Google and set config.quota_per_minute`,
    };
  });
}
