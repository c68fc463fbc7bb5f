import { expect, test } from "bun:test";
import { formatDuration, parseDuration } from "../../src/config/index.ts";

test("durations parse to milliseconds", () => {
  const cases: [string | number, number][] = [
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["1.5s", 1500],
    ["2h", 7_200_000],
    ["1m30s500ms", 90_500],
    [30, 30_000],
    ["30", 30_000],
    [0.25, 250],
    ["0s", 0],
  ];
  for (const [input, ms] of cases) expect([input, parseDuration(input)]).toEqual([input, ms]);
});

test("things that are not durations are refused", () => {
  for (const input of ["", "soon", "5 m", "5x", "-5s", -1, "1d", "m5", "1h 30m", true, null, {}, Number.NaN]) {
    expect([input, parseDuration(input)]).toEqual([input, undefined]);
  }
});

test("durations format back to the shortest Go spelling", () => {
  expect(formatDuration(5_400_000)).toBe("1h30m");
  expect(formatDuration(1000)).toBe("1s");
  expect(formatDuration(250)).toBe("250ms");
  expect(formatDuration(0)).toBe("0s");
});
