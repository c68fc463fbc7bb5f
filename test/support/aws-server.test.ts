// Drives the real @aws-sdk/client-secrets-manager against the local Secrets Manager emulator.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  BatchGetSecretValueCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  paginateListSecrets,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer, type AwsServer } from "./aws-server.ts";

let server: AwsServer;
beforeAll(async () => { server = await startAwsServer(); });
afterAll(async () => { await server.stop(); });

function client(overrides: { accessKeyId?: string; maxAttempts?: number } = {}) {
  return new SecretsManagerClient({
    endpoint: server.url,
    region: "us-east-1",
    maxAttempts: overrides.maxAttempts,
    credentials: { accessKeyId: overrides.accessKeyId ?? AWS_TEST_ACCESS_KEY_ID, secretAccessKey: "not-checked" },
  });
}

function resetFaults() {
  server.state.calls = {};
  server.state.authFailure = undefined;
  server.state.delayMs = 0;
  server.state.throttleNext(0);
}

describe("AWS Secrets Manager emulator", () => {
  test("GetSecretValue returns AWSCURRENT, and older versions by stage or VersionId", async () => {
    resetFaults();
    const v1 = server.state.putSecret("get/db", "first");
    const v2 = server.state.putSecret("get/db", "second");
    const sm = client();
    const current = await sm.send(new GetSecretValueCommand({ SecretId: "get/db" }));
    expect(current).toMatchObject({ Name: "get/db", SecretString: "second", VersionId: v2, VersionStages: ["AWSCURRENT"] });
    expect(current.CreatedDate).toBeInstanceOf(Date);
    const previous = await sm.send(new GetSecretValueCommand({ SecretId: current.ARN, VersionStage: "AWSPREVIOUS" }));
    expect(previous).toMatchObject({ SecretString: "first", VersionId: v1 });
    const byId = await sm.send(new GetSecretValueCommand({ SecretId: "get/db", VersionId: v1 }));
    expect(byId.SecretString).toBe("first");
    expect(server.state.calls.GetSecretValue).toBe(3);
  });

  test("GetSecretValue returns SecretBinary as bytes", async () => {
    server.state.putSecret("get/bin", new Uint8Array([0, 1, 254, 255]));
    const out = await client().send(new GetSecretValueCommand({ SecretId: "get/bin" }));
    expect(out.SecretString).toBeUndefined();
    expect([...out.SecretBinary!]).toEqual([0, 1, 254, 255]);
  });

  test("an unknown secret is a ResourceNotFoundException", async () => {
    const err = await client().send(new GetSecretValueCommand({ SecretId: "nope" })).catch((e) => e);
    expect(err.name).toBe("ResourceNotFoundException");
    expect(err.$metadata.httpStatusCode).toBe(400);
  });

  test("ListSecrets pages with NextToken and filters by name prefix", async () => {
    resetFaults();
    for (const n of ["list/a", "list/b", "list/c", "list/d", "list/e"]) server.state.putSecret(n, `value-${n}`);
    server.state.putSecret("other/x", "x");
    const names: string[] = [];
    const filter = { Filters: [{ Key: "name" as const, Values: ["list/"] }], MaxResults: 2 };
    for await (const page of paginateListSecrets({ client: client() }, filter)) {
      names.push(...(page.SecretList ?? []).map((s) => s.Name!));
    }
    expect(names).toEqual(["list/a", "list/b", "list/c", "list/d", "list/e"]);
    expect(server.state.calls.ListSecrets).toBe(3);
  });

  test("ListSecrets reports versions to stages and hides secrets scheduled for deletion", async () => {
    const current = server.state.putSecret("sched/keep", "k");
    server.state.putSecret("sched/gone", "g");
    server.state.deleteSecret("sched/gone", { scheduled: true });
    const sm = client();
    const filters = [{ Key: "name" as const, Values: ["sched/"] }];
    const listed = await sm.send(new ListSecretsCommand({ Filters: filters }));
    expect(listed.SecretList?.map((s) => s.Name)).toEqual(["sched/keep"]);
    expect(listed.SecretList?.[0]?.SecretVersionsToStages).toEqual({ [current]: ["AWSCURRENT"] });
    const withDeleted = await sm.send(new ListSecretsCommand({ Filters: filters, IncludePlannedDeletion: true }));
    expect(withDeleted.SecretList?.map((s) => s.Name).sort()).toEqual(["sched/gone", "sched/keep"]);
    expect(withDeleted.SecretList?.find((s) => s.Name === "sched/gone")?.DeletedDate).toBeInstanceOf(Date);
  });

  test("DescribeSecret moves AWSCURRENT and AWSPREVIOUS on each update", async () => {
    const v1 = server.state.putSecret("desc/x", "1");
    const v2 = server.state.putSecret("desc/x", "2");
    const v3 = server.state.putSecret("desc/x", "3");
    const out = await client().send(new DescribeSecretCommand({ SecretId: "desc/x" }));
    expect(out.VersionIdsToStages).toEqual({ [v2]: ["AWSPREVIOUS"], [v3]: ["AWSCURRENT"] });
    expect(Object.keys(out.VersionIdsToStages!)).not.toContain(v1);
  });

  test("BatchGetSecretValue returns values and per-secret errors", async () => {
    resetFaults();
    server.state.putSecret("batch/a", "A");
    server.state.putSecret("batch/b", "B");
    const out = await client().send(new BatchGetSecretValueCommand({ SecretIdList: ["batch/a", "batch/missing", "batch/b"] }));
    expect(out.SecretValues?.map((v) => [v.Name, v.SecretString])).toEqual([["batch/a", "A"], ["batch/b", "B"]]);
    expect(out.Errors).toEqual([expect.objectContaining({ SecretId: "batch/missing", ErrorCode: "ResourceNotFoundException" })]);
    const byFilter = await client().send(new BatchGetSecretValueCommand({ Filters: [{ Key: "name", Values: ["batch/"] }] }));
    expect(byFilter.SecretValues?.map((v) => v.SecretString)).toEqual(["A", "B"]);
    expect(server.state.calls.BatchGetSecretValue).toBe(2);
  });

  test("BatchGetSecretValue refuses more than 20 ids", async () => {
    const ids = Array.from({ length: 21 }, (_, i) => `batch/${i}`);
    const err = await client().send(new BatchGetSecretValueCommand({ SecretIdList: ids })).catch((e) => e);
    expect(err.name).toBe("ValidationException");
  });

  test("throttled requests are retried by the SDK and counted", async () => {
    resetFaults();
    server.state.putSecret("throttle/x", "ok");
    server.state.throttleNext(2);
    const out = await client().send(new GetSecretValueCommand({ SecretId: "throttle/x" }));
    expect(out.SecretString).toBe("ok");
    expect(out.$metadata.attempts).toBe(3);
    expect(server.state.calls.GetSecretValue).toBe(3);
  });

  test("throttling beyond the SDK's attempts surfaces ThrottlingException", async () => {
    resetFaults();
    server.state.throttleNext(5);
    const err = await client({ maxAttempts: 2 }).send(new GetSecretValueCommand({ SecretId: "throttle/x" })).catch((e) => e);
    expect(err.name).toBe("ThrottlingException");
    expect(server.state.calls.GetSecretValue).toBe(2);
  });

  test("an unknown access key id is an UnrecognizedClientException, not retried", async () => {
    resetFaults();
    const err = await client({ accessKeyId: "AKIDWRONG" }).send(new GetSecretValueCommand({ SecretId: "get/db" })).catch((e) => e);
    expect(err.name).toBe("UnrecognizedClientException");
    expect(server.state.calls.GetSecretValue).toBe(1);
  });

  test("an injected auth failure is returned as ExpiredTokenException", async () => {
    resetFaults();
    server.state.authFailure = "ExpiredTokenException";
    const err = await client().send(new ListSecretsCommand({})).catch((e) => e);
    expect(err.name).toBe("ExpiredTokenException");
    resetFaults();
  });

  test("a delayed response lets the caller's abort signal fire first", async () => {
    resetFaults();
    server.state.delayMs = 5_000;
    const started = performance.now();
    const err = await client().send(new ListSecretsCommand({}), { abortSignal: AbortSignal.timeout(200) }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(performance.now() - started).toBeLessThan(3_000);
    resetFaults();
  });
});
