import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { VersionMarkers } from "../../src/secrets/version-marker.ts";

const key = randomBytes(32);
const markers = new VersionMarkers(key);

describe("version markers", () => {
  test("a marker reads back per secret, and changes only with that secret's fingerprint", () => {
    const m1 = markers.marker({ db: "fp-1", api: "fp-a" });
    const m2 = markers.marker({ db: "fp-2", api: "fp-a" });
    expect(markers.matches(m1, { api: "fp-a", db: "fp-1" })).toBe(true);
    expect(markers.matches(m1, { db: "fp-2", api: "fp-a" })).toBe(false);
    const before = markers.read(m1, ["db", "api", "other"])!;
    const after = markers.read(m2, ["db", "api"])!;
    expect(before.get("db")).toBe(markers.token("db", "fp-1"));
    expect(before.has("other")).toBe(false);
    expect(before.get("api")).toBe(after.get("api"));
    expect(before.get("db")).not.toBe(after.get("db"));
    expect(markers.read("garbage", ["db"])).toBeUndefined();
  });

  test("the known marker of a set is the marker of its known fingerprints, and none while one is unknown", () => {
    const known: Record<string, string> = { db: "fp-1", api: "fp-a" };
    expect(markers.known(["db", "api"], (n) => known[n])).toBe(markers.marker({ db: "fp-1", api: "fp-a" }));
    expect(markers.known(["db", "new"], (n) => known[n])).toBeUndefined();
    expect(markers.known([], (n) => known[n])).toBeUndefined();
  });

  test("another key (a reboot, another host) reads nothing from a marker", () => {
    const other = new VersionMarkers(randomBytes(32));
    expect(other.read(markers.marker({ db: "fp-1" }), ["db"])?.size).toBe(0);
  });

  test("a marker holds nothing a guess of the value could be checked against", () => {
    // The file provider's fingerprint is a hash of the value: the marker must not expose it.
    const value = "correct-horse";
    const fingerprint = createHash("sha256").update(value).digest("hex");
    const marker = markers.marker({ db: fingerprint });
    const guesses = [value, fingerprint, createHash("sha256").update(fingerprint).digest("hex"), createHash("sha256").update(`db\0${fingerprint}`).digest("hex")];
    // Positive control: a marker made of a bare hash would be caught by this check.
    const bare = `dso1:${createHash("sha256").update("db").digest("hex").slice(0, 8)}=${fingerprint.slice(0, 12)}`;
    const leaks = (text: string) => guesses.some((g) => text.includes(g.slice(0, 12)));
    expect(leaks(bare)).toBe(true);
    expect(leaks(marker)).toBe(false);
    expect(leaks(markers.token("db", fingerprint))).toBe(false);
  });

  test("beyond 150 secrets one token covers the set: every secret reads back as it, and it changes when any one does", () => {
    const names = Array.from({ length: 151 }, (_, i) => `s${i}`);
    const fps = Object.fromEntries(names.map((n) => [n, `fp-${n}`]));
    const m1 = markers.marker(fps);
    const m2 = markers.marker({ ...fps, s7: "fp-new" });
    const before = markers.read(m1, names)!;
    const after = markers.read(m2, names)!;
    expect(before.size).toBe(names.length);
    expect(new Set(before.values()).size).toBe(1);
    expect(before.get("s0")).not.toBe(after.get("s0"));
    expect(markers.read(markers.marker(fps), ["s3"])?.get("s3")).toBe(before.get("s3"));
    // Keyed like the per-secret tokens: after a reboot (a new key) the old set reads as nothing.
    expect(new VersionMarkers(randomBytes(32)).read(m1, names)?.size).toBe(0);
  });
});
