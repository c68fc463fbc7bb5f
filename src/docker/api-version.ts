import { DsoError } from "../errors.ts";

/** Newest Engine API DSO was written against; we never ask a daemon for more. */
export const OUR_MAX_API = "1.44";
/** Oldest Engine API DSO can work with (Docker 20.10, as shipped by Debian 12). */
export const OUR_MIN_API = "1.41";

export interface ServerApiVersions {
  ApiVersion: string;
  /** Absent on very old daemons; then any version up to ApiVersion is accepted. */
  MinAPIVersion?: string;
}

export interface OurApiRange {
  min: string;
  max: string;
}

/** Parses "1.41" into [1, 41]; API versions are dotted integers, never decimals (1.9 < 1.10). */
function parseApiVersion(version: string): number[] {
  const parts = version.trim().split(".");
  if (parts.length === 0 || parts.some((part) => !/^\d+$/.test(part))) {
    throw new DsoError("DOCKER_API", `Docker reported an unreadable API version "${version}"`);
  }
  return parts.map(Number);
}

/** Negative when a < b, zero when equal, positive when a > b; compares numerically per component. */
export function compareApiVersions(a: string, b: string): number {
  const left = parseApiVersion(a);
  const right = parseApiVersion(b);
  const length = Math.max(left.length, right.length);
  for (let i = 0; i < length; i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/**
 * Picks the API version to pin for every request: the newest both sides speak. Refuses when the
 * daemon is older than we support, or newer than we are and no longer accepts our newest.
 */
export function negotiateApiVersion(
  server: ServerApiVersions,
  ours: OurApiRange = { min: OUR_MIN_API, max: OUR_MAX_API },
): string {
  const chosen = compareApiVersions(server.ApiVersion, ours.max) < 0 ? server.ApiVersion.trim() : ours.max;
  if (compareApiVersions(chosen, ours.min) < 0) {
    throw new DsoError(
      "DOCKER_API",
      `Docker speaks Engine API ${server.ApiVersion}, but DSO needs at least ${ours.min}`,
      { hint: "upgrade Docker to 20.10 or newer" },
    );
  }
  if (server.MinAPIVersion !== undefined && compareApiVersions(chosen, server.MinAPIVersion) < 0) {
    throw new DsoError(
      "DOCKER_API",
      `Docker requires Engine API ${server.MinAPIVersion} or newer, but DSO speaks at most ${ours.max}`,
      { hint: "upgrade DSO" },
    );
  }
  return chosen;
}
