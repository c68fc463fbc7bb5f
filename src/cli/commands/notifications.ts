import { defineCommand } from "citty";
import { findConfigPath, loadConfig } from "../../config/index.ts";
import { DsoError } from "../../errors.ts";
import { sendTestNotifications } from "../../notify/webhook-notifier.ts";
import { versionInfo } from "../../version.ts";
import { configArg, formatTable, globalArgs, jsonArg } from "../_shared.ts";

const test = defineCommand({
  meta: { name: "test", description: "Send a test notification to every webhook in dso.yaml and show each answer; exit 1 if any fails" },
  args: { ...configArg, ...jsonArg, ...globalArgs },
  async run({ args }) {
    const path = findConfigPath({ flag: args.config, env: process.env });
    const { config } = await loadConfig(path, process.env);
    const { notifications } = config;
    if (notifications.webhooks.length === 0) {
      throw new DsoError("CONFIG_INVALID", `${path ?? "the built-in configuration"} has no notifications.webhooks`, { hint: "see docs/notifications.md" });
    }
    const results = await sendTestNotifications(notifications, { version: versionInfo().version });
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ enabled: notifications.enabled, results })}\n`);
    } else {
      const rows = results.map((r) => [r.webhook, r.ok ? "ok" : "FAILED", r.result, r.events.join(",")]);
      process.stdout.write(`${formatTable(["WEBHOOK", "STATUS", "ANSWER", "EVENTS"], rows)}\n`);
      if (!notifications.enabled) process.stderr.write("warning: notifications.enabled is not true: the agent sends nothing\n");
    }
    if (results.some((r) => !r.ok)) process.exitCode = 1;
  },
});

export default defineCommand({
  meta: { name: "notifications", description: "Outbound notifications (webhooks)" },
  args: { ...globalArgs },
  subCommands: { test },
});
