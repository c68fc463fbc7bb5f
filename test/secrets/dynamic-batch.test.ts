// A reconcile wave asks the lease keeper once per consumer, whatever the number of delivery paths
// that need the credential; a fetch that names no container refuses a dynamic secret; the wave's
// copies are wiped at release. (The keeper is faked: its own logic is in test/leases/.)
import { describe, expect, test } from "bun:test";
import type { SecretSpec } from "../../src/config/types.ts";
import { FetchBatch, SecretSource } from "../../src/secrets/source.ts";
import { SecretStore } from "../../src/secrets/store.ts";
import type { DynamicCredentials } from "../../src/secrets/types.ts";

const spec = (name: string): SecretSpec => ({
  name, provider: "vault", inject: { type: "env" }, targets: { containers: [], labels: {}, volumes: [] }, mappings: {},
  rotation: { enabled: true, strategy: "none", signal: "SIGHUP", healthCheckTimeoutMs: 1000 },
});

function setup(scope: "container" | "shared" = "container") {
  const store = new SecretStore(false);
  store.setSpecs([spec("db")]);
  const asked: string[] = [];
  const dynamic: DynamicCredentials = {
    isDynamic: (name) => name === "db",
    consumerOf: (_name, container) => (scope === "shared" ? "shared" : container),
    fingerprintFor: (_name, container) => `lease:${container}`,
    credential: async (_name, container) => {
      asked.push(container);
      const who = scope === "shared" ? "shared" : container;
      return { value: new Map([["password", new TextEncoder().encode(`pw-${who}`)]]), fingerprint: `lease:${who}` };
    },
  };
  const source = new SecretSource({ store, provider: () => undefined, log: { warn: () => {} }, dynamic: () => dynamic });
  return { source, asked };
}

describe("dynamic secrets in a fetch batch", () => {
  test("one issue per consumer per wave; distinct consumers get their own; release wipes them", async () => {
    const { source, asked } = setup();
    const batch = new FetchBatch(source, new Set(["db"]));
    const [a1, a2, b] = await Promise.all([batch.values(["db"], "a"), batch.values(["db"], "a"), batch.values(["db"], "b")]);
    expect(asked.sort()).toEqual(["a", "b"]);
    const bytes = a1.values.get("db")!.value.get("password")!;
    expect(new TextDecoder().decode(bytes)).toBe("pw-a");
    expect(a2.values.get("db")!.fingerprint).toBe("lease:a");
    expect(new TextDecoder().decode(b.values.get("db")!.value.get("password"))).toBe("pw-b");
    batch.release();
    expect(bytes.every((x) => x === 0)).toBe(true);
  });

  test("without a lease keeper (dso inject with no agent) a dynamic secret is refused, never read as a KV secret", async () => {
    const store = new SecretStore(false);
    store.setSpecs([{ ...spec("db"), lease: { engine: "database", kind: "creds", role: "app", params: {}, scope: "container", renewAt: 2 / 3, reissueMargin: 0.15, revokeOnRemove: true, revokeGraceMs: 0 } }]);
    let asked = 0;
    const source = new SecretSource({ store, provider: () => ({ fetch: async () => (asked++, []) }), log: { warn: () => {} } });
    const result = await new FetchBatch(source, new Set(["db"])).values(["db"], "container");
    expect(asked).toBe(0);
    expect(result.errors[0]).toContain("only a running agent issues it");
  });

  test("a shared lease serves a fetch that names no container (a DSO volume, a Swarm service)", async () => {
    const { source, asked } = setup("shared");
    const result = await new FetchBatch(source, new Set(["db"])).values(["db"]);
    expect(asked).toEqual([""]);
    expect(new TextDecoder().decode(result.values.get("db")!.value.get("password"))).toBe("pw-shared");
  });

  test("a fetch that serves no single container refuses a dynamic secret, naming it and why", async () => {
    const { source, asked } = setup();
    const result = await new FetchBatch(source, new Set(["db"])).values(["db"]);
    expect(asked).toEqual([]);
    expect(result.failed.get("db")?.code).toBe("DELIVERY_REFUSED");
    expect(result.errors[0]).toContain('secret "db" is dynamic');
  });
});
