import { describe, expect, test } from "bun:test";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { swarmSecretName } from "../../src/reloader/swarm.ts";
import { VersionMarkers } from "../../src/secrets/version-marker.ts";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("swarm secret names", () => {
  const markers = new VersionMarkers(randomBytes(32));
  const value = "correct-horse";
  // What the file provider sends for this value: a MAC under its instance key.
  const fingerprint = `hmac-sha256:${createHmac("sha256", randomBytes(32)).update(value).digest("hex")}`;

  test("stable for one set of fingerprints, new when one changes", () => {
    const name = swarmSecretName(markers, "web", "/run/secrets/db", { db: fingerprint, api: "v3" });
    expect(name).toMatch(/^dso_web_db_[0-9a-f]{12}$/);
    expect(swarmSecretName(markers, "web", "/run/secrets/db", { api: "v3", db: fingerprint })).toBe(name);
    expect(swarmSecretName(markers, "web", "/run/secrets/db", { db: fingerprint, api: "v4" })).not.toBe(name);
    expect(swarmSecretName(markers, "api", "/run/secrets/db", { db: fingerprint, api: "v3" })).not.toBe(name);
  });

  test("a name holds nothing a guess of the value could be checked against; another key gives another name", () => {
    const name = swarmSecretName(markers, "web", "/run/secrets/db", { db: fingerprint });
    // The old scheme: sha256 over service, target and an unkeyed sha256 fingerprint of the value.
    const oldFingerprint = `sha256:${sha256(value)}`;
    const guesses = [sha256(value), sha256(`web\0/run/secrets/db\0db,${oldFingerprint}`), sha256(`web\0/run/secrets/db\0db,${fingerprint}`)];
    // Positive control: the old name is caught by this check.
    const oldName = `dso_web_db_${guesses[1]!.slice(0, 12)}`;
    const leaks = (text: string) => guesses.some((g) => text.includes(g.slice(0, 12)));
    expect(leaks(oldName)).toBe(true);
    expect(leaks(name)).toBe(false);
    const other = new VersionMarkers(randomBytes(32));
    expect(swarmSecretName(other, "web", "/run/secrets/db", { db: fingerprint })).not.toBe(name);
  });
});
