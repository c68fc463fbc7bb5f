// Local AWS Secrets Manager speaking the AWS JSON 1.1 protocol (POST /, Content-Type
// application/x-amz-json-1.1, X-Amz-Target: secretsmanager.<Operation>), for driving the real
// @aws-sdk/client-secrets-manager with `endpoint: server.url` and static credentials.
// Operations: GetSecretValue, BatchGetSecretValue, ListSecrets, DescribeSecret.
// Auth check: the Authorization header must be SigV4 ("AWS4-HMAC-SHA256 Credential=<key>/<date>/
// <region>/secretsmanager/aws4_request, SignedHeaders=..., Signature=<hex>") with the expected
// access key id and region. The signature itself is NOT verified.
// Errors are JSON 1.1 errors: HTTP 400 (or 5xx), body {"__type": code, "message": ...} and an
// x-amzn-ErrorType header, as the SDK's JSON error parser expects.

export interface AwsSecretVersion {
  versionId: string;
  secretString?: string;
  secretBinary?: Uint8Array;
  stages: string[];
  created: Date;
}

export interface AwsSecret {
  name: string;
  arn: string;
  description?: string;
  tags: Record<string, string>;
  created: Date;
  lastChanged: Date;
  /** Set when the secret is scheduled for deletion (hidden from ListSecrets by default). */
  deletedDate?: Date;
  versions: AwsSecretVersion[];
}

export type AwsAuthFailure = "UnrecognizedClientException" | "ExpiredTokenException";

export interface AwsServerState {
  secrets: Map<string, AwsSecret>;
  /** Requests per operation, counted before faults, so SDK retries show up here. */
  calls: Record<string, number>;
  /** Creates the secret or adds a new version that becomes AWSCURRENT; returns the VersionId. */
  putSecret(name: string, value: string | Uint8Array, extra?: { description?: string; tags?: Record<string, string> }): string;
  /** Removes the secret now, or with `scheduled` marks it for deletion as DeleteSecret would. */
  deleteSecret(name: string, opts?: { scheduled?: boolean }): void;
  /** The next `count` requests are answered with ThrottlingException. */
  throttleNext(count: number): void;
  /** Every request fails authentication with this error until set back to undefined. */
  authFailure: AwsAuthFailure | undefined;
  /** Each response waits this long first (for timeout/hang tests); aborted requests stop waiting. */
  delayMs: number;
}

export interface AwsServerOptions {
  accessKeyId?: string;
  region?: string;
  accountId?: string;
}

export interface AwsServer {
  url: string;
  state: AwsServerState;
  stop(): Promise<void>;
}

export const AWS_TEST_ACCESS_KEY_ID = "AKIDDSOTESTKEY000001";
const BATCH_ID_LIMIT = 20;
const LIST_PAGE_LIMIT = 100;

class AwsError extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message);
  }
}

function randomSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return Array.from({ length: 6 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

const epochSeconds = (d: Date) => d.getTime() / 1000;

function errorResponse(err: AwsError): Response {
  return new Response(JSON.stringify({ __type: err.code, message: err.message }), {
    status: err.status,
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-errortype": `${err.code}:http://internal.amazon.com/coral/com.amazonaws.secrets/`,
      "x-amzn-requestid": crypto.randomUUID(),
    },
  });
}

function checkSigV4(header: string | null, accessKeyId: string, region: string): void {
  if (!header) throw new AwsError("MissingAuthenticationTokenException", "Missing Authentication Token");
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=[^,]+, ?Signature=[0-9a-f]{64}$/.exec(header ?? "");
  if (!match) throw new AwsError("IncompleteSignatureException", "Authorization header is not a valid SigV4 signature.");
  const [, keyId, , signedRegion, service] = match;
  if (keyId !== accessKeyId) throw new AwsError("UnrecognizedClientException", "The security token included in the request is invalid.");
  if (signedRegion !== region || service !== "secretsmanager") {
    throw new AwsError("InvalidSignatureException", `Credential should be scoped to a valid region and service (${region}/secretsmanager).`);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

interface Filter { Key: string; Values: string[] }

function matchesFilters(s: AwsSecret, filters: Filter[] | undefined): boolean {
  for (const f of filters ?? []) {
    const candidates = (() => {
      switch (f.Key) {
        case "name": return [s.name];
        case "description": return [s.description ?? ""];
        case "tag-key": return Object.keys(s.tags);
        case "tag-value": return Object.values(s.tags);
        case "all": return [s.name, s.description ?? "", ...Object.keys(s.tags), ...Object.values(s.tags)];
        default: throw new AwsError("InvalidParameterException", `Unsupported filter key: ${f.Key}`);
      }
    })();
    const caseless = f.Key === "description" || f.Key === "all";
    const norm = (x: string) => (caseless ? x.toLowerCase() : x);
    // Values of one filter are ORed; a leading "!" negates; all filters are ANDed.
    const ok = f.Values.some((raw) => {
      const negate = raw.startsWith("!");
      const prefix = norm(negate ? raw.slice(1) : raw);
      const hit = candidates.some((c) => norm(c).startsWith(prefix));
      return negate ? !hit : hit;
    });
    if (!ok) return false;
  }
  return true;
}

function versionsToStages(s: AwsSecret): Record<string, string[]> {
  // Versions without a staging label are deprecated and not listed.
  return Object.fromEntries(s.versions.filter((v) => v.stages.length > 0).map((v) => [v.versionId, [...v.stages]]));
}

function describe(s: AwsSecret) {
  return {
    ARN: s.arn,
    Name: s.name,
    ...(s.description !== undefined && { Description: s.description }),
    CreatedDate: epochSeconds(s.created),
    LastChangedDate: epochSeconds(s.lastChanged),
    ...(s.deletedDate && { DeletedDate: epochSeconds(s.deletedDate) }),
    Tags: Object.entries(s.tags).map(([Key, Value]) => ({ Key, Value })),
  };
}

function pageOf<T>(items: T[], nextToken: unknown, maxResults: unknown, limit: number): { page: T[]; next?: string } {
  const size = maxResults === undefined ? limit : Number(maxResults);
  if (!Number.isInteger(size) || size < 1 || size > limit) {
    throw new AwsError("ValidationException", `1 validation error detected: Value '${String(maxResults)}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to ${limit}`);
  }
  const start = nextToken === undefined ? 0 : Number.parseInt(atob(String(nextToken)), 10);
  if (!Number.isInteger(start) || start < 0 || start > items.length) throw new AwsError("InvalidNextTokenException", "The NextToken value is invalid.");
  const end = start + size;
  return { page: items.slice(start, end), ...(end < items.length && { next: btoa(String(end)) }) };
}

export async function startAwsServer(opts: AwsServerOptions = {}): Promise<AwsServer> {
  const accessKeyId = opts.accessKeyId ?? AWS_TEST_ACCESS_KEY_ID;
  const region = opts.region ?? "us-east-1";
  const accountId = opts.accountId ?? "123456789012";
  let throttleRemaining = 0;

  const state: AwsServerState = {
    secrets: new Map(),
    calls: {},
    authFailure: undefined,
    delayMs: 0,
    throttleNext(count) { throttleRemaining = count; },
    putSecret(name, value, extra = {}) {
      const now = new Date();
      let s = state.secrets.get(name);
      if (!s) {
        s = { name, arn: `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${randomSuffix()}`, tags: {}, created: now, lastChanged: now, versions: [] };
        state.secrets.set(name, s);
      }
      if (extra.description !== undefined) s.description = extra.description;
      if (extra.tags) s.tags = { ...extra.tags };
      for (const v of s.versions) {
        v.stages = v.stages.filter((st) => st !== "AWSPREVIOUS");
        if (v.stages.includes("AWSCURRENT")) v.stages = v.stages.map((st) => (st === "AWSCURRENT" ? "AWSPREVIOUS" : st));
      }
      const version: AwsSecretVersion = { versionId: crypto.randomUUID(), stages: ["AWSCURRENT"], created: now };
      if (typeof value === "string") version.secretString = value;
      else version.secretBinary = value;
      s.versions.push(version);
      s.lastChanged = now;
      return version.versionId;
    },
    deleteSecret(name, { scheduled = false } = {}) {
      const s = state.secrets.get(name);
      if (!s) return;
      if (scheduled) s.deletedDate = new Date();
      else state.secrets.delete(name);
    },
  };

  function findSecret(id: unknown): AwsSecret {
    const key = String(id ?? "");
    for (const s of state.secrets.values()) {
      // A partial ARN (without the random suffix) is accepted too, as AWS does.
      if (s.name === key || s.arn === key || s.arn.slice(0, -7) === key) return s;
    }
    throw new AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
  }

  function secretValue(s: AwsSecret, versionId?: unknown, stage?: unknown) {
    if (s.deletedDate) throw new AwsError("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.");
    const wantedStage = versionId === undefined && stage === undefined ? "AWSCURRENT" : stage;
    const v = s.versions.find((x) => (versionId === undefined || x.versionId === versionId) && (wantedStage === undefined || x.stages.includes(String(wantedStage))));
    if (!v) throw new AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for the requested version or staging label.");
    return {
      ARN: s.arn,
      Name: s.name,
      VersionId: v.versionId,
      ...(v.secretString !== undefined && { SecretString: v.secretString }),
      ...(v.secretBinary !== undefined && { SecretBinary: Buffer.from(v.secretBinary).toString("base64") }),
      VersionStages: [...v.stages],
      CreatedDate: epochSeconds(v.created),
    };
  }

  const sortedSecrets = () => [...state.secrets.values()].sort((a, b) => a.created.getTime() - b.created.getTime() || a.name.localeCompare(b.name));

  const operations: Record<string, (input: Record<string, any>) => unknown> = {
    GetSecretValue: (input) => secretValue(findSecret(input.SecretId), input.VersionId, input.VersionStage),
    DescribeSecret: (input) => {
      const s = findSecret(input.SecretId);
      return { ...describe(s), VersionIdsToStages: versionsToStages(s) };
    },
    ListSecrets: (input) => {
      const all = sortedSecrets().filter((s) => (input.IncludePlannedDeletion || !s.deletedDate) && matchesFilters(s, input.Filters));
      if (input.SortOrder === "desc") all.reverse();
      const { page, next } = pageOf(all, input.NextToken, input.MaxResults, LIST_PAGE_LIMIT);
      return { SecretList: page.map((s) => ({ ...describe(s), SecretVersionsToStages: versionsToStages(s) })), ...(next && { NextToken: next }) };
    },
    BatchGetSecretValue: (input) => {
      const ids: string[] | undefined = input.SecretIdList;
      if (ids && input.Filters) throw new AwsError("InvalidParameterException", "Either SecretIdList or Filters must be provided, but not both.");
      if (!ids && !input.Filters) throw new AwsError("InvalidParameterException", "Either SecretIdList or Filters must be provided.");
      if (ids && (ids.length < 1 || ids.length > BATCH_ID_LIMIT)) {
        throw new AwsError("ValidationException", `1 validation error detected: Member must have length less than or equal to ${BATCH_ID_LIMIT}`);
      }
      if (ids && input.MaxResults !== undefined) throw new AwsError("InvalidParameterException", "MaxResults can only be used with Filters.");
      const SecretValues: unknown[] = [];
      const Errors: unknown[] = [];
      if (ids) {
        for (const id of ids) {
          try { SecretValues.push(secretValue(findSecret(id))); } catch (e) {
            if (!(e instanceof AwsError)) throw e;
            Errors.push({ SecretId: id, ErrorCode: e.code, Message: e.message });
          }
        }
        return { SecretValues, Errors };
      }
      const matched = sortedSecrets().filter((s) => !s.deletedDate && matchesFilters(s, input.Filters));
      const { page, next } = pageOf(matched, input.NextToken, input.MaxResults, BATCH_ID_LIMIT);
      return { SecretValues: page.map((s) => secretValue(s)), Errors, ...(next && { NextToken: next }) };
    },
  };

  async function handle(req: Request): Promise<Response> {
    const target = req.headers.get("x-amz-target") ?? "";
    const operation = target.startsWith("secretsmanager.") ? target.slice("secretsmanager.".length) : "";
    state.calls[operation] = (state.calls[operation] ?? 0) + 1;
    if (state.delayMs > 0) await abortableSleep(state.delayMs, req.signal);
    if (throttleRemaining > 0) {
      throttleRemaining--;
      throw new AwsError("ThrottlingException", "Rate exceeded");
    }
    if (req.method !== "POST") throw new AwsError("UnknownOperationException", "Only POST is supported.", 404);
    checkSigV4(req.headers.get("authorization"), accessKeyId, region);
    if (state.authFailure === "UnrecognizedClientException") throw new AwsError(state.authFailure, "The security token included in the request is invalid.");
    if (state.authFailure === "ExpiredTokenException") throw new AwsError(state.authFailure, "The security token included in the request is expired");
    const run = operations[operation];
    if (!run) throw new AwsError("UnknownOperationException", `Unknown operation ${target}`);
    if (!(req.headers.get("content-type") ?? "").startsWith("application/x-amz-json-1.1")) {
      throw new AwsError("SerializationException", "Content-Type must be application/x-amz-json-1.1.");
    }
    const input = (await req.json().catch(() => { throw new AwsError("SerializationException", "Request body is not JSON."); })) as Record<string, any>;
    return Response.json(run(input ?? {}), {
      headers: { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": crypto.randomUUID() },
    });
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    async fetch(req) {
      try {
        return await handle(req);
      } catch (e) {
        if (e instanceof AwsError) return errorResponse(e);
        return errorResponse(new AwsError("InternalServiceError", String(e), 500));
      }
    },
  });

  return { url: `http://127.0.0.1:${server.port}`, state, stop: () => server.stop(true) };
}
