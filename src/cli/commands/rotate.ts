import { defineCommand } from "citty";
import { callRoute, resolveSocketPath } from "../agent-client.ts";
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
    const { results } = await callRoute(socket, "rotate", { secret: args.secret });
    printReports(results, args.json);
  },
});
