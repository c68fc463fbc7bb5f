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
      expect.stringMatching(/^dso\.yaml:10: providers\.local\.events: change events are read for aws \(SQS\), azure \(Storage queue\) and gcp \(Pub\/Sub\) providers, not file/),
    ]);
  });

  test("gcp reads a Pub/Sub subscription; the other key is refused per type at its line", () => {
    const ok = load(["providers:", "  gsm:", "    type: gcp", "    config:", "      project: my-project", "    events:", "      subscription: projects/my-project/subscriptions/dso_secret.events-1", "      max_age: 10m", ""].join("\n"));
    expect(ok.problems).toEqual([]);
    expect(ok.config!.providers.gsm!.events).toEqual({ queue: "projects/my-project/subscriptions/dso_secret.events-1", maxAgeMs: 600_000 });
    const text = [
      "providers:",
      "  gsm:",
      "    type: gcp",
      "    config:",
      "      project: my-project",
      "    events:",
      "      queue: https://pubsub.googleapis.com/v1/projects/my-project/subscriptions/s",
      "  cloud:",
      "    type: aws",
      "    region: eu-west-1",
      "    events:",
      "      subscription: projects/my-project/subscriptions/dso-events",
      "  gsm2:",
      "    type: gcp",
      "    config:",
      "      project: my-project",
      "    events:",
      "      subscription: dso-events",
      "  gsm3:",
      "    type: gcp",
      "    config:",
      "      project: my-project",
      "    events:",
      "      max_age: 5m",
      "",
    ].join("\n");
    expect(load(text).problems).toEqual([
      expect.stringMatching(/^dso\.yaml:7: providers\.gsm\.events\.queue: gcp reads change events from a Pub\/Sub pull subscription \(events\.subscription: /),
      expect.stringMatching(/^dso\.yaml:12: providers\.cloud\.events\.subscription: aws reads change events from a queue URL \(events\.queue\), not a Pub\/Sub subscription/),
      expect.stringMatching(/^dso\.yaml:18: providers\.gsm2\.events\.subscription: must be projects\/<project>\/subscriptions\/<subscription>/),
      expect.stringMatching(/^dso\.yaml:23: providers\.gsm3\.events: gcp needs events\.subscription/),
    ]);
  });
});
