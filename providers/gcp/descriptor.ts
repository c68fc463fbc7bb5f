/**
 * The gcp provider (Google Cloud Secret Manager, REST) as the agent side knows it (see
 * ProviderDescriptor), with the rules of its config values, which `dso config validate` and the
 * provider (config.ts) share, and the metadata-read quota `dso doctor` budgets polls against.
 */
import { isIP } from "node:net";
import * as v from "valibot";
import { configValue, integerValue, urlValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

/** Secret Manager's default quota for reads other than access (versions/latest, list): per project. */
export const GCP_METADATA_READS_PER_MINUTE = 600;
/** Of the project's metadata quota, DSO uses this share, leaving room for people and other tools. */
export const GCP_QUOTA_SHARE = 0.9;
export const GCP_DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com";
export const PUBSUB_DEFAULT_ENDPOINT = "https://pubsub.googleapis.com";

/** A project id (`my-project`, `example.com:my-project`) or a project number. */
const PROJECT = /^(?:(?:[a-z0-9-]+\.)+[a-z]{2,}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,20}$/;

export const gcpProject = configValue<string>((raw) =>
  PROJECT.test(raw) ? { value: raw } : { problem: "must be a Google Cloud project id (6-30 of a-z, 0-9, -) or a project number" },
);

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

/** Origin (and path prefix) of the REST API, without a trailing slash; for emulators and private endpoints. */
const gcpEndpoint = v.pipe(
  urlValue("is not a URL (expected https://secretmanager.googleapis.com)", (url) => {
    if (url.protocol !== "https:" && url.protocol !== "http:") return `unsupported scheme ${url.protocol}`;
    if (url.username || url.password) return "must not carry credentials in the URL";
    if (url.search || url.hash) return "must not have a query or fragment";
    return undefined;
  }),
  v.transform((url) => `${url.origin}${url.pathname.replace(/\/+$/, "")}`),
);

export const gcpConfigSchema = v.object(
  {
    project: gcpProject,
    endpoint: v.optional(gcpEndpoint),
    /** The Pub/Sub REST API (change events), for emulators and private endpoints. */
    pubsub_endpoint: v.optional(gcpEndpoint),
    /** The project's quota of metadata reads per minute, if Google raised it for you. */
    quota_per_minute: v.optional(integerValue(1, 1_000_000)),
  },
  "required (the Google Cloud project id, e.g. my-project)",
);

export const gcpAuthParamsSchema = v.object({
  /** Path of a service-account JSON key or an external_account file (else GOOGLE_APPLICATION_CREDENTIALS). */
  key_file: v.optional(configValue<string>((raw) => (raw.trim() !== "" ? { value: raw } : { problem: "must be a file path" }))),
});

/** Plain http to another host sends the OAuth access token in clear. */
export function gcpConfigWarnings(config: Readonly<Record<string, string>>): Array<{ key: string; message: string }> {
  return (["endpoint", "pubsub_endpoint"] as const).flatMap((key) => {
    let url: URL;
    try {
      url = new URL(config[key] ?? "");
    } catch {
      return [];
    }
    if (url.protocol !== "http:" || isLoopback(url.hostname)) return [];
    return [{ key, message: "plain http to a non-loopback host sends the Google access token in clear; use https" }];
  });
}

/**
 * Metadata reads per minute a poll of `secrets` every `intervalMs` costs (one versions/latest per
 * secret, a second when latest is not enabled is not counted), for `dso doctor`.
 */
export function gcpPollReadsPerMinute(secrets: number, intervalMs: number): number {
  return Math.ceil(secrets * (60_000 / Math.max(1, intervalMs)));
}

export const gcpDescriptor: ProviderDescriptor = {
  type: "gcp",
  config: gcpConfigSchema,
  authParams: gcpAuthParamsSchema,
  authMethods: ["default", "service_account_key", "external_account", "metadata"],
  // Paths and a host name, never key material: the key file is read by the provider process.
  env: ["GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"],
  credentials: [],
  configWarnings: gcpConfigWarnings,
  load: () => import("./index.ts").then((m) => m.gcpProvider),
};
