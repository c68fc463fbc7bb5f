/**
 * Durations in dso.yaml: Go-style strings ("30s", "5m", "1h30m", "250ms", "1.5s") or a plain
 * number of seconds (30, "30"). Parsed to whole milliseconds.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PATTERN = /^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/;
const PART_PATTERN = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
const SECONDS_PATTERN = /^\d+(?:\.\d+)?$/;

/** Milliseconds, or undefined when the input is not a duration (negative values included). */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === "number") {
    return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  }
  if (typeof input !== "string") return undefined;
  const text = input.trim();
  if (SECONDS_PATTERN.test(text)) return Math.round(Number(text) * 1000);
  if (!DURATION_PATTERN.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART_PATTERN)) total += Number(amount) * UNIT_MS[unit!]!;
  return Math.round(total);
}

/** Shortest Go-style spelling of a millisecond count, for messages and docs ("5m", "1h30m"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  let rest = ms;
  let out = "";
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000], ["ms", 1]] as const) {
    const count = Math.floor(rest / size);
    if (count > 0) out += `${count}${unit}`;
    rest -= count * size;
  }
  return out;
}
