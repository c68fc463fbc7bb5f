import { describe, expect, test } from "bun:test";
import { compareApiVersions, negotiateApiVersion, OUR_MAX_API, OUR_MIN_API } from "../../src/docker/api-version.ts";
import { DsoError } from "../../src/errors.ts";

function negotiationError(run: () => unknown): DsoError {
  try {
    run();
  } catch (error) {
    if (error instanceof DsoError) return error;
    throw error;
  }
  throw new Error("expected negotiation to be refused");
}

describe("compareApiVersions", () => {
  test("compares components as numbers, so 1.9 is older than 1.10", () => {
    expect(compareApiVersions("1.9", "1.10")).toBeLessThan(0);
    expect(compareApiVersions("1.10", "1.9")).toBeGreaterThan(0);
  });

  test("treats equal versions as equal, a missing component as zero", () => {
    expect(compareApiVersions("1.41", "1.41")).toBe(0);
    expect(compareApiVersions("1", "1.0")).toBe(0);
    expect(compareApiVersions("2.0", "1.99")).toBeGreaterThan(0);
  });

  test("refuses an unreadable version with DOCKER_API", () => {
    expect(negotiationError(() => compareApiVersions("1.x", "1.41")).code).toBe("DOCKER_API");
  });
});

describe("negotiateApiVersion", () => {
  test("pins the daemon's version when it is older than ours (Docker 20.10 gives 1.41)", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.41", MinAPIVersion: "1.12" })).toBe("1.41");
  });

  test("pins our newest version when the daemon is newer", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.51", MinAPIVersion: "1.24" })).toBe(OUR_MAX_API);
  });

  test("accepts a daemon whose minimum is exactly our newest (Docker 29 raised it to 1.44)", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.52", MinAPIVersion: "1.44" })).toBe("1.44");
  });

  test("accepts a daemon that reports no minimum", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.43" })).toBe("1.43");
  });

  test("does not mistake 1.100 for older than 1.44", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.100", MinAPIVersion: "1.40" })).toBe(OUR_MAX_API);
  });

  test("refuses a daemon older than our minimum, naming both versions", () => {
    const error = negotiationError(() => negotiateApiVersion({ ApiVersion: "1.40", MinAPIVersion: "1.12" }));
    expect(error.code).toBe("DOCKER_API");
    expect(error.message).toContain("1.40");
    expect(error.message).toContain(OUR_MIN_API);
    expect(error.hint).toContain("upgrade Docker");
  });

  test("refuses a daemon whose minimum is above everything we speak", () => {
    const error = negotiationError(() => negotiateApiVersion({ ApiVersion: "1.60", MinAPIVersion: "1.45" }));
    expect(error.code).toBe("DOCKER_API");
    expect(error.message).toContain("1.45");
    expect(error.hint).toContain("upgrade DSO");
  });

  test("honours a custom range", () => {
    expect(negotiateApiVersion({ ApiVersion: "1.9", MinAPIVersion: "1.2" }, { min: "1.5", max: "1.10" })).toBe("1.9");
  });
});
