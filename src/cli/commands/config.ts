import { defineCommand } from "citty";
import { ConfigError, findConfigPath, formatIssue, loadConfig } from "../../config/index.ts";
import { runtimePathProblems } from "../../doctor/runtime-paths.ts";
import { configArg, globalArgs, jsonArg } from "../_shared.ts";

const validate = defineCommand({
  meta: { name: "validate", description: "Check dso.yaml and report every problem with its line" },
  args: { ...configArg, ...jsonArg, ...globalArgs },
  async run({ args }) {
    const path = findConfigPath({ flag: args.config, env: process.env });
    try {
      const { config, warnings } = await loadConfig(path, process.env);
      // What the agent checks of the file system at start, so "valid" means it starts (issue 22).
      const where = path ?? "built-in default configuration";
      const paths = runtimePathProblems(config);
      if (paths.length) {
        if (args.json) process.stdout.write(`${JSON.stringify({ valid: false, path, errors: paths.map((p) => `${where}: ${p}`) })}\n`);
        else for (const p of paths) process.stderr.write(`${where}: ${p}\n`);
        process.exitCode = 1;
        return;
      }
      const summary = {
        valid: true,
        path,
        providers: Object.keys(config.providers).length,
        secrets: config.secrets.length,
        outputs: config.secrets.reduce((n, s) => n + (s.outputs?.length ?? 0), 0),
        warnings: warnings.map(formatIssue),
      };
      if (args.json) return void process.stdout.write(`${JSON.stringify(summary)}\n`);
      for (const w of warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`);
      process.stdout.write(`${where}: valid (${summary.providers} providers, ${summary.secrets} secrets${summary.outputs ? `, ${summary.outputs} outputs` : ""})\n`);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      if (args.json) {
        process.stdout.write(`${JSON.stringify({ valid: false, path, errors: error.issues.map(formatIssue) })}\n`);
      } else {
        for (const issue of error.issues) process.stderr.write(`${formatIssue(issue)}\n`);
      }
      process.exitCode = 1;
    }
  },
});

export default defineCommand({
  meta: { name: "config", description: "Inspect the configuration" },
  args: { ...globalArgs },
  subCommands: { validate },
});
