#!/usr/bin/env bun
/** The aws provider against the local Secrets Manager emulator. Run: bun bench/provider-aws.ts [--dev | --binary PATH] */
import { AWS_TEST_ACCESS_KEY_ID, startAwsServer } from "../test/support/aws-server.ts";
import { diff, measureProvider, printProviderTable, SECRETS, type Counters } from "./provider-harness.ts";

const server = await startAwsServer();
for (let i = 0; i < SECRETS; i++) {
  server.state.putSecret(`bench/s${String(i).padStart(4, "0")}`, JSON.stringify({ username: `user-${i}`, password: `pw-${i}-${"x".repeat(32)}` }));
}
const refs = [...server.state.secrets.keys()].map((name) => ({ name }));
const m = await measureProvider(
  {
    configure: { name: "bench", type: "aws", region: "us-east-1", config: { endpoint: server.url } },
    env: { PATH: process.env.PATH, AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: AWS_TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "bench-secret-key" },
  },
  "aws",
  refs,
  () => ({ ...server.state.calls }),
);
await server.stop();
const calls = (a: Counters, b: Counters) =>
  ["ListSecrets", "DescribeSecret", "BatchGetSecretValue", "GetSecretValue"].map((op) => `${op} ${diff(a, b, op)}`).join(", ");
const c = m.counters;
printProviderTable("aws", m, [
  [`poll of ${SECRETS}: calls`, calls(c.before, c.afterPoll)],
  ["poll of 5 after that: calls", calls(c.afterPoll, c.afterFew)],
  [`fetch of ${SECRETS}: calls`, calls(c.afterRepoll, c.afterFetch)],
]);
