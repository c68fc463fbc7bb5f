import { defineCommand } from "citty";
import { Agent } from "../../agent/agent.ts";
import { findConfigPath, formatIssue, loadConfig } from "../../config/index.ts";
import { describeError } from "../../errors.ts";
import { log } from "../../log/logger.ts";
import { configArg, globalArgs, socketArg } from "../_shared.ts";

export default defineCommand({
  meta: { name: "agent", description: "Run the agent: watch providers and Docker, deliver and rotate secrets" },
  args: { ...configArg, ...socketArg, ...globalArgs },
  async run({ args }) {
    const configPath = findConfigPath({ flag: args.config, env: process.env });
    const { config, warnings } = await loadConfig(configPath, process.env);
    for (const w of warnings) log.warn(`config: ${formatIssue(w)}`);
    log.info("starting agent", { config: configPath ?? "built-in default (file provider on /etc/dso/secrets)" });
    const agent = new Agent(config, {
      configPath,
      // The same order as every other command's (--socket, $DSO_SOCKET, agent.socket), so a direct
      // `dso inject` names the DSO volume driver as this agent does.
      socketPath: args.socket || process.env.DSO_SOCKET || undefined,
      env: process.env,
    });
    const stopped = new Promise<void>((resolve) => {
      const stop = () => void agent.stop().then(resolve);
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
    process.on("SIGHUP", () => void agent.reload());
    // A bug in one code path must not take down the daemon that keeps every container's secrets.
    process.on("unhandledRejection", (error) => log.error("unhandled error (agent keeps running)", { error: describeError(error) }));
    await agent.start();
    await stopped;
    log.info("agent stopped");
  },
});
