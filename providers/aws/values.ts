/**
 * Reading values: refs that follow AWSCURRENT go through BatchGetSecretValue (20 per call);
 * pinned refs, and anything the batch could not answer, through GetSecretValue one by one.
 */
import {
  BatchGetSecretValueCommand,
  GetSecretValueCommand,
  type SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { ProviderError } from "../errors.ts";
import type { FetchItem, ProviderLogger, SecretRef } from "../types.ts";
import type { SecretValue } from "../../src/rpc/protocol.ts";
import { isAccessDenied, isCredentialError, toProviderError } from "./errors.ts";
import { mapLimit } from "../../src/util/map-limit.ts";
import { isMapping } from "../../src/util/is-mapping.ts";

/** AWS limit for SecretIdList. */
export const BATCH_GET_LIMIT = 20;
const GET_CONCURRENCY = 8;

interface RawValue {
  Name?: string;
  ARN?: string;
  VersionId?: string;
  SecretString?: string;
  SecretBinary?: Uint8Array;
}

type Outcome = { version: string; value: SecretValue } | ProviderError;

/** A JSON object with keys gives those keys (non-strings JSON-encoded); anything else is `value`. */
export function decodeSecretValue(raw: RawValue): SecretValue | undefined {
  if (raw.SecretBinary !== undefined) {
    return { data: { value: Buffer.from(raw.SecretBinary).toString("base64") }, encoding: "base64" };
  }
  const text = raw.SecretString;
  if (text === undefined) return undefined;
  if (!text.trimStart().startsWith("{")) return { data: { value: text }, encoding: "utf8" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { data: { value: text }, encoding: "utf8" };
  }
  const entries = isMapping(parsed) ? Object.entries(parsed) : [];
  if (entries.length === 0) return { data: { value: text }, encoding: "utf8" };
  return { data: Object.fromEntries(entries.map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])), encoding: "utf8" };
}

const followsCurrent = (ref: SecretRef) => ref.version === undefined && (ref.stage === undefined || ref.stage === "AWSCURRENT");
/** Refs that read the same value share one outcome: all AWSCURRENT refs of a name are one. */
const outcomeKey = (ref: SecretRef) => (followsCurrent(ref) ? ref.name : `${ref.name}\u0000${ref.version ?? ""}\u0000${ref.stage ?? ""}`);

/** Does a batch answer (Name, ARN) belong to the id we asked for (a name, an ARN, or a partial ARN)? */
function answers(raw: RawValue, id: string): boolean {
  return raw.Name === id || raw.ARN === id || (raw.ARN !== undefined && raw.ARN.slice(0, -7) === id);
}

export class ValueReader {
  private batchDenied = false;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly provider: string,
    private readonly log: ProviderLogger,
  ) {}

  async fetch(refs: SecretRef[], signal: AbortSignal): Promise<FetchItem[]> {
    const outcomes = new Map<string, Outcome>();
    const current = [...new Set(refs.filter(followsCurrent).map((r) => r.name))];
    const batched = this.batchDenied ? new Map<string, Outcome>() : await this.batchGet(current, signal);
    for (const [name, outcome] of batched) outcomes.set(name, outcome);

    const rest = uniqueRefs(refs.filter((r) => !outcomes.has(outcomeKey(r))));
    await mapLimit(rest, GET_CONCURRENCY, async (ref) => {
      outcomes.set(outcomeKey(ref), await this.getOne(ref, signal));
    });

    return refs.map((ref) => {
      const outcome = outcomes.get(outcomeKey(ref));
      if (!outcome) return { ref, error: { code: "INTERNAL", message: `provider ${this.provider} (aws): secret "${ref.name}" was not fetched` } };
      if (outcome instanceof ProviderError) {
        return { ref, error: { code: outcome.rpcCode, message: outcome.message, ...(outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {}) } };
      }
      return { ref, fingerprint: outcome.version, version: outcome.version, value: outcome.value };
    });
  }

  /** Values for the names it could answer; names left out go to GetSecretValue. */
  private async batchGet(names: string[], signal: AbortSignal): Promise<Map<string, Outcome>> {
    const out = new Map<string, Outcome>();
    for (let i = 0; i < names.length && !this.batchDenied; i += BATCH_GET_LIMIT) {
      const ids = names.slice(i, i + BATCH_GET_LIMIT);
      try {
        const reply = await this.client.send(new BatchGetSecretValueCommand({ SecretIdList: ids }), { abortSignal: signal });
        for (const id of ids) {
          const raw = reply.SecretValues?.find((v) => answers(v, id));
          if (raw) out.set(id, this.outcome(raw, id));
        }
        for (const failure of reply.Errors ?? []) {
          if (!failure.SecretId || !ids.includes(failure.SecretId)) continue;
          // Per-secret errors in a batch reply; access denied is retried alone below, since the
          // batch needs BatchGetSecretValue on "*" plus GetSecretValue on each secret.
          if (failure.ErrorCode === "AccessDeniedException") continue;
          out.set(failure.SecretId, toProviderError({ name: failure.ErrorCode }, this.provider, failure.SecretId));
        }
      } catch (error) {
        if (isCredentialError(error)) throw toProviderError(error, this.provider);
        if (isAccessDenied(error)) {
          this.batchDenied = true;
          this.log.warn("BatchGetSecretValue is not allowed; fetching with one GetSecretValue per secret", { provider: this.provider });
          continue;
        }
        const failure = toProviderError(error, this.provider);
        for (const id of ids) out.set(id, failure);
      }
    }
    return out;
  }

  private async getOne(ref: SecretRef, signal: AbortSignal): Promise<Outcome> {
    try {
      const raw = await this.client.send(
        new GetSecretValueCommand({
          SecretId: ref.name,
          ...(ref.version !== undefined ? { VersionId: ref.version } : {}),
          ...(ref.stage !== undefined ? { VersionStage: ref.stage } : {}),
        }),
        { abortSignal: signal },
      );
      return this.outcome(raw, ref.name);
    } catch (error) {
      if (isCredentialError(error)) throw toProviderError(error, this.provider);
      return toProviderError(error, this.provider, ref.name);
    }
  }

  private outcome(raw: RawValue, name: string): Outcome {
    const value = decodeSecretValue(raw);
    if (!value || !raw.VersionId) return new ProviderError("SECRET_NOT_FOUND", `provider ${this.provider} (aws): secret "${name}" has no value`);
    return { version: raw.VersionId, value };
  }
}

function uniqueRefs(refs: SecretRef[]): SecretRef[] {
  const seen = new Map<string, SecretRef>();
  for (const ref of refs) {
    if (!seen.has(outcomeKey(ref))) seen.set(outcomeKey(ref), ref);
  }
  return [...seen.values()];
}
