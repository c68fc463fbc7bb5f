/** `providers.<name>.events` (change detection by push): checked at load, each problem at its line. */
import { describe, expect, test } from "bun:test";
import { ConfigError, formatIssue, parseConfig } from "../../src/config/index.ts";

function load(text: string) {
  try {
    return { config: parseConfig(text, "dso.yaml", {}).config, problems: [] as string[] };
  } catch (error) {
    if (error instanceof ConfigError) return { config: undefined, problems: error.issues.map(formatIssue) };
    throw error;
  }
}

describe("providers.<name>.events", () => {
  test("a queue URL and max_age resolve (default max_age 5m)", () => {
    const { config, problems } = load(["providers:", "  cloud:", "    type: aws", "    region: eu-west-1", "    events:", "      queue: https://sqs.eu-west-1.amazonaws.com/123456789012/dso-events", ""].join("\n"));
    expect(problems).toEqual([]);
    expect(config!.providers.cloud!.events).toEqual({ queue: "https://sqs.eu-west-1.amazonaws.com/123456789012/dso-events", maxAgeMs: 300_000 });
  });

  test("a bad queue, an unknown key and events on a provider without a queue reader are errors at their lines", () => {
    const text = [
      "providers:",
      "  cloud:",
      "    type: aws",
      "    region: eu-west-1",
      "    events:",
      "      queue: dso-events",
      "      max_agee: 5m",
      "  local:",
      "    type: file",
      "    events:",
      "      queue: https://example.com/q",
      "",
    ].join("\n");
    expect(load(text).problems).toEqual([
      expect.stringMatching(/^dso\.yaml:6: providers\.cloud\.events\.queue: must be the queue's https URL/),
      expect.stringMatching(/^dso\.yaml:7: providers\.cloud\.events\.max_agee: /),
      expect.stringMatching(/^dso\.yaml:10: providers\.local\.events: change events are read for aws \(SQS\) and azure \(Storage queue\) providers, not file/),
    ]);
  });
});
