import { describe, expect, test } from "bun:test";
import { SecretStore } from "../../src/secrets/store.ts";
import { parseConfig } from "../../src/config/index.ts";
import { DsoError } from "../../src/errors.ts";
import type { SecretFetcher } from "../../src/secrets/types.ts";
import type { SecretRef } from "../../src/rpc/protocol.ts";
import type { FetchedItem } from "../../src/rpc/wire-values.ts";
import { secretBytes } from "../support/secret-bytes.ts";

const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
import { testSource } from "../support/test-source.ts";

const { config } = parseConfig("providers:\n  p:\n    type: file\nsecrets:\n  - name: db\n", "dso.yaml", {});

/** An in-process provider whose next answer the test decides. */
class ScriptedProvider implements SecretFetcher {
  next: "value" | "outage" | "gone" = "value";
  value = "v1";
  async fetch(refs: SecretRef[]): Promise<FetchedItem[]> {
    if (this.next === "outage") throw new DsoError("PROVIDER_UNAVAILABLE", "provider p exited (signal SIGKILL)");
    return refs.map((ref) =>
      this.next === "gone"
        ? { ref, error: { code: "SECRET_NOT_FOUND", message: `secret "${ref.name}" not found` } }
        : { ref, fingerprint: `fp-${this.value}`, version: this.value, value: secretBytes({ value: this.value }) },
    );
  }
}

function reloader(cache: boolean) {
  const store = new SecretStore(cache);
  store.setSpecs(config.secrets);
  const provider = new ScriptedProvider();
  const r = testSource({ store, provider });
  return { r, store, provider };
}

describe("agent.cache: last known values in memory", () => {
  test("with the cache, an outage serves the last value and marks the secret stale", async () => {
    const { r, store, provider } = reloader(true);
    expect(text((await r.fetch(["db"])).values.get("db")?.value.get("value"))).toBe("v1");
    provider.next = "outage";
    const during = await r.fetch(["db"]);
    expect(during.errors).toEqual([]);
    expect(text(during.values.get("db")?.value.get("value"))).toBe("v1");
    expect(store.get("db")).toMatchObject({ stale: true, error: "provider p exited (signal SIGKILL)" });
  });

  test("without the cache, an outage is an error and no value is kept", async () => {
    const { r, store, provider } = reloader(false);
    await r.fetch(["db"]);
    expect(store.get("db")?.cached).toBeUndefined();
    provider.next = "outage";
    const during = await r.fetch(["db"]);
    expect(during.values.size).toBe(0);
    expect(during.errors[0]).toContain("provider p exited");
  });

  test("a secret the provider says is gone is not served from the cache", async () => {
    const { r, provider } = reloader(true);
    await r.fetch(["db"]);
    provider.next = "gone";
    const after = await r.fetch(["db"]);
    expect(after.values.size).toBe(0);
    expect(after.errors[0]).toContain("not found");
  });

  test("a changed fingerprint drops the cached value", async () => {
    const { r, store, provider } = reloader(true);
    await r.fetch(["db"]);
    expect(store.recordFingerprint("db", "fp-v2", new Date())).toBe("changed");
    expect(store.cachedValue("db")).toBeUndefined();
    provider.value = "v2";
    expect(text((await r.fetch(["db"])).values.get("db")?.value.get("value"))).toBe("v2");
  });

  test("a poll that answers after a failed fetch reports the secret recovered, so the containers it left behind are looked at", async () => {
    const { r, store, provider } = reloader(false);
    await r.fetch(["db"]);
    expect(store.recordFingerprint("db", "fp-v1", new Date())).toBe("unchanged");
    provider.next = "outage";
    await r.fetch(["db"]);
    expect(store.get("db")?.stale).toBe(true);
    expect(store.recordFingerprint("db", "fp-v1", new Date())).toBe("recovered");
    expect(store.get("db")?.stale).toBe(false);
    expect(store.recordFingerprint("db", "fp-v1", new Date())).toBe("unchanged");
  });
});
