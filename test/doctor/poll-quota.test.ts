/** `dso doctor` warns when the gcp secrets of a project, polled every interval, outgrow its metadata quota. */
import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/index.ts";
import { checkPollQuota } from "../../src/doctor/poll-quota.ts";

function configWith(secrets: number, interval: string, extra = "") {
  const list = Array.from({ length: secrets }, (_, i) => `  - name: s${i}\n    provider: g\n    inject: { type: file, path: /run/secrets }\n    targets: { containers: [app] }`).join("\n");
  const yaml = `version: 2\nproviders:\n  g:\n    type: gcp\n    config:\n      project: my-project\n${extra}agent:\n  watch:\n    polling_interval: ${interval}\nsecrets:\n${list}\n`;
  return parseConfig(yaml, "dso.yaml", {}).config;
}

test("300 secrets every 30 s (600/min) are over the 540 DSO uses of the 600 quota: warned, with the interval that fits", () => {
  const [result] = checkPollQuota(configWith(300, "30s"));
  expect(result?.status).toBe("warn");
  expect(result?.detail).toContain("project my-project: 300 secret(s) every 30 s need 600 metadata reads a minute, over the 540 DSO uses of its quota of 600");
  expect(result?.detail).toContain("polling_interval to 34s or more");
});

test("the same secrets every 5 min, or with a raised quota, are fine; no gcp provider, no check", () => {
  expect(checkPollQuota(configWith(300, "5m"))[0]?.status).toBe("ok");
  expect(checkPollQuota(configWith(300, "30s", "      quota_per_minute: \"6000\"\n"))[0]?.status).toBe("ok");
  expect(checkPollQuota(parseConfig("version: 2\nproviders:\n  f:\n    type: file\nsecrets: []\n", "dso.yaml", {}).config)).toEqual([]);
});
