/**
 * Fingerprint polls within the protocol's limits (issue 18, finding 8): 6,000 secrets of one
 * provider are asked for in requests the provider would accept, and a secret whose name the
 * protocol refuses is that secret's error alone. The fake source applies the real request schema.
 */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import type { SecretSpec } from "../../src/config/types.ts";
import { MAX_FRAME_BYTES, MAX_REFS_PER_CALL, MAX_REFS_REQUEST_BYTES, RequestSchema, requestChunks, type FingerprintItem, type SecretRef } from "../../src/rpc/protocol.ts";
import { SecretSource } from "../../src/secrets/source.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import { secretBytes } from "../support/secret-bytes.ts";
import { pollProvider } from "../../src/watcher/provider-poller.ts";

function spec(name: string): SecretSpec {
  return {
    name,
    provider: "p",
    inject: { type: "file", path: "/run/secrets", uid: 0, gid: 0, mode: 0o400 },
    targets: { containers: [], labels: {}, volumes: [] },
    mappings: {},
    rotation: { enabled: true, strategy: "none", signal: "SIGHUP", healthCheckTimeoutMs: 1000 },
  };
}

/** Answers like a provider child: refuses what the protocol refuses, as the whole call. */
class StrictSource {
  calls: number[] = [];
  async fingerprint(refs: SecretRef[]): Promise<FingerprintItem[]> {
    const request = { id: 1, method: "fingerprint", params: { refs } };
    if (!v.is(RequestSchema, request) || Buffer.byteLength(JSON.stringify(request)) > MAX_FRAME_BYTES) throw new Error("RPC_PROTOCOL: request refused");
    this.calls.push(refs.length);
    return refs.map((ref) => ({ ref, fingerprint: `fp-${ref.name.length}` }));
  }
}

describe("fingerprint polls within the protocol's limits", () => {
  test("6,000 secrets and one 3,000-character name: every other secret is fingerprinted", async () => {
    const store = new SecretStore(false);
    for (let i = 0; i < 6000; i++) store.ensure(spec(`n${i}`));
    store.ensure(spec("x".repeat(3000)));
    const source = new StrictSource();
    const outcome = await pollProvider("p", source, store);
    expect(outcome.failed).toBe(false);
    expect(outcome.seeded).toHaveLength(6000);
    expect(outcome.errors).toEqual([{ secret: "x".repeat(3000), message: "not asked for: a secret name, version or stage must be 1 to 2048 characters" }]);
    expect(source.calls).toEqual([MAX_REFS_PER_CALL, 1000]);
  });

  test("requests are cut by bytes too: long names go in more, smaller calls", () => {
    const refs = Array.from({ length: 3000 }, (_, i) => ({ name: `${i}`.padStart(2000, "n") }));
    const chunks = requestChunks(refs, (r) => r);
    expect(chunks.flat()).toEqual(refs);
    for (const chunk of chunks) expect(Buffer.byteLength(JSON.stringify(chunk))).toBeLessThanOrEqual(MAX_REFS_REQUEST_BYTES + chunk.length);
    expect(chunks.length).toBeGreaterThan(5);
  });

  test("a call that fails fails only its own chunk", async () => {
    const store = new SecretStore(false);
    for (let i = 0; i < 6000; i++) store.ensure(spec(`n${i}`));
    let call = 0;
    const outcome = await pollProvider(
      "p",
      {
        async fingerprint(refs) {
          if (call++ === 0) throw new Error("provider hiccup");
          return refs.map((ref) => ({ ref, fingerprint: "f" }));
        },
      },
      store,
    );
    expect(outcome.failed).toBe(false);
    expect(outcome.errors).toHaveLength(MAX_REFS_PER_CALL);
    expect(outcome.seeded).toHaveLength(1000);
  });

  test("a fetch of 6,000 secrets goes in requests the provider accepts: every value arrives", async () => {
    const store = new SecretStore(false);
    for (let i = 0; i < 6000; i++) store.ensure(spec(`n${i}`));
    const calls: number[] = [];
    const source = new SecretSource({
      store,
      log: { warn: () => {} },
      provider: () => ({
        async fetch(refs) {
          const request = { id: 1, method: "fetch", params: { refs } };
          if (!v.is(RequestSchema, request)) throw new Error("RPC_PROTOCOL: request refused");
          calls.push(refs.length);
          return refs.map((ref) => ({ ref, fingerprint: "f", value: secretBytes({ value: "v" }) }));
        },
      }),
    });
    const result = await source.fetch(Array.from({ length: 6000 }, (_, i) => `n${i}`));
    expect(result.errors).toEqual([]);
    expect(result.values.size).toBe(6000);
    expect(calls.sort()).toEqual([1000, MAX_REFS_PER_CALL]);
  });
});
