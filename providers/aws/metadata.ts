/**
 * Drift detection without reading values: a secret's fingerprint is the VersionId that holds the
 * wanted staging label (AWSCURRENT by default), read from ListSecrets, which returns 100 secrets'
 * SecretVersionsToStages per call. A rotation moves AWSCURRENT to a new VersionId; a metadata edit
 * (tags, description) does not, so it causes no refetch. Only refs ListSecrets did not return
 * (ARNs under a name filter, missing or deleted secrets) cost one DescribeSecret each.
 */
import {
  DescribeSecretCommand,
  ListSecretsCommand,
  type ListSecretsCommandInput,
  type SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { ProviderError } from "../errors.ts";
import type { FingerprintItem, ProviderLogger, SecretRef } from "../types.ts";
import { isAccessDenied, isCredentialError, toProviderError } from "./errors.ts";
import { mapLimit } from "../../src/util/map-limit.ts";

/** AWS limits: ListSecrets returns at most 100 per page; a filter takes at most 10 values. */
export const LIST_PAGE_SIZE = 100;
export const NAME_FILTER_VALUES = 10;
/** Until a full listing has told us the account's size, assume a full scan costs this many calls. */
const ASSUMED_FULL_SCAN_CALLS = 10;
const DESCRIBE_CONCURRENCY = 8;
const CURRENT_STAGE = "AWSCURRENT";

export interface SecretMetadata {
  name: string;
  arn: string;
  versionsToStages: Record<string, string[]>;
  deleted: boolean;
}

/** The VersionId a ref points at: its pinned version (if still labelled), else the one holding its stage. */
export function selectVersion(ref: SecretRef, versionsToStages: Record<string, string[]>): string | undefined {
  if (ref.version !== undefined) {
    const stages = versionsToStages[ref.version];
    if (!stages || (ref.stage !== undefined && !stages.includes(ref.stage))) return undefined;
    return ref.version;
  }
  const stage = ref.stage ?? CURRENT_STAGE;
  return Object.entries(versionsToStages).find(([, stages]) => stages.includes(stage))?.[0];
}

/** ARNs end in "-" plus 6 random characters; AWS also accepts the ARN without them. */
function lookupKeys(meta: SecretMetadata): string[] {
  const keys = [meta.name, meta.arn];
  if (/-[A-Za-z0-9]{6}$/.test(meta.arn)) keys.push(meta.arn.slice(0, -7));
  return keys;
}

const isArn = (name: string) => name.startsWith("arn:");

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class MetadataReader {
  /** Secrets seen by the last full listing: decides whether name filters are cheaper next time. */
  private accountSize?: number;
  private listDenied = false;
  /** Calls made, by operation, for the benchmark and logs. */
  readonly calls = { ListSecrets: 0, DescribeSecret: 0 };

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly provider: string,
    private readonly log: ProviderLogger,
  ) {}

  async fingerprint(refs: SecretRef[], signal: AbortSignal): Promise<FingerprintItem[]> {
    const names = [...new Set(refs.map((r) => r.name))];
    const found = await this.list(names, signal);
    const missing = names.filter((n) => !found.has(n));
    const described = new Map<string, SecretMetadata | ProviderError>();
    await mapLimit(missing, DESCRIBE_CONCURRENCY, async (name) => {
      described.set(name, await this.describe(name, signal));
    });
    return refs.map((ref) => this.item(ref, found.get(ref.name) ?? described.get(ref.name)));
  }

  async probe(signal: AbortSignal): Promise<void> {
    this.calls.ListSecrets++;
    await this.client.send(new ListSecretsCommand({ MaxResults: 1 }), { abortSignal: signal });
  }

  private item(ref: SecretRef, meta: SecretMetadata | ProviderError | undefined): FingerprintItem {
    const who = `provider ${this.provider} (aws):`;
    if (meta === undefined) return { ref, error: { code: "INTERNAL", message: `${who} secret "${ref.name}" was not looked up` } };
    if (meta instanceof ProviderError) return { ref, error: { code: meta.rpcCode, message: meta.message } };
    if (meta.deleted) return { ref, error: { code: "SECRET_NOT_FOUND", message: `${who} secret "${ref.name}" is scheduled for deletion` } };
    const version = selectVersion(ref, meta.versionsToStages);
    if (!version) {
      const wanted = ref.version ? `version ${ref.version}${ref.stage ? ` with stage ${ref.stage}` : ""}` : `stage ${ref.stage ?? CURRENT_STAGE}`;
      return { ref, error: { code: "SECRET_NOT_FOUND", message: `${who} secret "${ref.name}" has no ${wanted}` } };
    }
    return { ref, fingerprint: version };
  }

  /** Metadata of as many of `names` as ListSecrets can give, keyed by the name as asked. */
  private async list(names: string[], signal: AbortSignal): Promise<Map<string, SecretMetadata>> {
    const found = new Map<string, SecretMetadata>();
    if (this.listDenied || names.length === 0) return found;
    const filterable = names.filter((n) => !isArn(n));
    const filteredCalls = Math.ceil(filterable.length / NAME_FILTER_VALUES);
    const fullCalls = this.accountSize === undefined ? ASSUMED_FULL_SCAN_CALLS : Math.max(1, Math.ceil(this.accountSize / LIST_PAGE_SIZE));
    const useFilters = filterable.length > 0 && filteredCalls < fullCalls;
    const wanted = new Set(names);
    const keep = (meta: SecretMetadata) => {
      for (const key of lookupKeys(meta)) if (wanted.has(key)) found.set(key, meta);
    };
    try {
      if (useFilters) {
        // The name filter is a prefix match: "db" also returns "db-old"; keep exact matches only.
        for (const values of chunk(filterable, NAME_FILTER_VALUES)) {
          await this.listPages({ Filters: [{ Key: "name", Values: values }] }, keep, signal);
        }
      } else {
        this.accountSize = await this.listPages({}, keep, signal);
      }
    } catch (error) {
      if (!isAccessDenied(error)) throw toProviderError(error, this.provider);
      // ListSecrets cannot be scoped to resources, so least-privilege policies often lack it.
      this.listDenied = true;
      this.log.warn("ListSecrets is not allowed; polling falls back to one DescribeSecret per secret", { provider: this.provider });
      found.clear();
    }
    return found;
  }

  /** Walks every page; returns how many secrets were listed. */
  private async listPages(input: ListSecretsCommandInput, keep: (meta: SecretMetadata) => void, signal: AbortSignal): Promise<number> {
    let nextToken: string | undefined;
    let seen = 0;
    do {
      this.calls.ListSecrets++;
      const page = await this.client.send(
        new ListSecretsCommand({ ...input, MaxResults: LIST_PAGE_SIZE, ...(nextToken ? { NextToken: nextToken } : {}) }),
        { abortSignal: signal },
      );
      for (const entry of page.SecretList ?? []) {
        seen++;
        if (!entry.Name || !entry.ARN) continue;
        keep({ name: entry.Name, arn: entry.ARN, versionsToStages: entry.SecretVersionsToStages ?? {}, deleted: entry.DeletedDate !== undefined });
      }
      nextToken = page.NextToken;
    } while (nextToken);
    return seen;
  }

  private async describe(name: string, signal: AbortSignal): Promise<SecretMetadata | ProviderError> {
    try {
      this.calls.DescribeSecret++;
      const out = await this.client.send(new DescribeSecretCommand({ SecretId: name }), { abortSignal: signal });
      return {
        name: out.Name ?? name,
        arn: out.ARN ?? name,
        versionsToStages: out.VersionIdsToStages ?? {},
        deleted: out.DeletedDate !== undefined,
      };
    } catch (error) {
      if (isCredentialError(error)) throw toProviderError(error, this.provider);
      return toProviderError(error, this.provider, name);
    }
  }
}
