/**
 * secrets[].version / stage from dso.yaml reach the provider: the agent's poller and fetch send
 * the pin, through the real `dso provider aws` process, to the local Secrets Manager.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SecretStore } from "../../src/secrets/store.ts";
import { parseConfig } from "../../src/config/index.ts";
import { ProviderProcess } from "../../src/rpc/supervisor.ts";
import { pollProvider } from "../../src/watcher/provider-poller.ts";
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer } from "../support/aws-server.ts";
import { testSource } from "../support/test-source.ts";
import { valueData } from "../support/secret-bytes.ts";

let server: Awaited<ReturnType<typeof startAwsServer>>;
let provider: ProviderProcess;

beforeAll(async () => {
  server = await startAwsServer();
  provider = new ProviderProcess({
    configure: { name: "aws", type: "aws", region: "us-east-1", config: { endpoint: server.url } },
    env: { PATH: process.env.PATH, AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "test-secret-key" },
  });
});
afterAll(async () => {
  await provider.stop();
  await server.stop();
});

describe("version and stage pins from dso.yaml", () => {
  test("a stage pin follows that stage; an unpinned secret follows the current value", async () => {
    const v1 = server.state.putSecret("app/db", "first-value");
    server.state.putSecret("app/db", "second-value");
    const { config } = parseConfig(
      [
        "providers:",
        "  aws: { type: aws, region: us-east-1 }",
        "secrets:",
        "  - name: app/db",
        "    stage: AWSPREVIOUS",
        "",
      ].join("\n"),
      "dso.yaml",
      {},
    );
    expect(config.secrets[0]).toMatchObject({ name: "app/db", stage: "AWSPREVIOUS" });
    const store = new SecretStore(false);
    store.setSpecs(config.secrets);
    const poll = await pollProvider("aws", provider, store);
    expect(poll.seeded).toEqual(["app/db"]);
    expect(store.get("app/db")?.fingerprint).toBe(v1);
    const { values } = await testSource({ store, provider }).fetch(["app/db"]);
    expect(valueData(values.get("app/db")?.value)?.data).toEqual({ value: "first-value" });

    // A new current version moves AWSPREVIOUS: the pinned secret changes too.
    server.state.putSecret("app/db", "third-value");
    const again = await pollProvider("aws", provider, store);
    expect(again.changed).toEqual(["app/db"]);
  });

  test("version and stage are validated like every other key", () => {
    expect(() => parseConfig("secrets:\n  - name: x\n    version: ''\n", "dso.yaml", {})).toThrow("secrets.0.version");
  });
});
