import { expect, test } from "bun:test";
import { failureReport, formatFigures, fuzzRuns } from "../support/fuzz.ts";
import { TemplateError } from "../../src/templates/errors.ts";
import { checkTemplate, fuzzTemplates, judgeError, PLANTED } from "./template-cases.ts";

test("template fuzz: the positive control finds a leaking message", () => {
  const origin = { file: "dso.yaml", line: 1, output: "x" };
  expect(judgeError("{{ .password }}", new TemplateError(origin, 1, `bad ${PLANTED[1]}`)).ok).toBe(false);
  expect(judgeError("{{ .password }}", new TypeError("boom")).ok).toBe(false);
  expect(checkTemplate("{{ .password | b64dec }}").ok).toBe(true);
});

test("template parser and renderer: no crash, no hang, no value in an error", async () => {
  const figures = await fuzzTemplates(fuzzRuns(2_000));
  console.log(formatFigures(figures));
  expect(failureReport(figures)).toBe("");
  expect(figures.crashes + figures.hangs + figures.violations).toBe(0);
}, 60_000);
