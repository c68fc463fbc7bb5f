import { defineCommand } from "citty";
import type { ActionReport } from "../../reloader/reloader.ts";
import { callAgent, resolveSocketPath } from "../agent-client.ts";
import { withProgress } from "../progress.ts";
import { agentClientArgs, secretPositional } from "../_shared.ts";
import { printReports } from "./sync.ts";

export default defineCommand({
  meta: { name: "rotate", description: "Fetch a secret again and apply it to every container using it (with its strategy)" },
  args: {
    ...secretPositional,
    ...agentClientArgs,
  },
  async run({ args }) {
    const socket = await resolveSocketPath(args);
    const request = callAgent<{ results: ActionReport[] }>(socket, "POST", "/v1/rotate", { secret: args.secret });
    const { results } = await withProgress(`rotating ${args.secret} in every container using it`, request);
    printReports(results, args.json);
  },
});
