import { defineCommand, type CommandDef } from "citty";
import { versionInfo } from "../version.ts";
import { globalArgs } from "./_shared.ts";

type LazyCommand = () => Promise<CommandDef<any>>;

/** Every command, loaded only when used so `dso version` does not pay for the cloud SDKs. */
export const commands: Record<string, LazyCommand> = {
  version: () => import("./commands/version.ts").then((m) => m.default),
  config: () => import("./commands/config.ts").then((m) => m.default),
  doctor: () => import("./commands/doctor.ts").then((m) => m.default),
  status: () => import("./commands/status.ts").then((m) => m.default),
  ls: () => import("./commands/ls.ts").then((m) => m.default),
  sync: () => import("./commands/sync.ts").then((m) => m.default),
  rotate: () => import("./commands/rotate.ts").then((m) => m.default),
  plan: () => import("./commands/plan.ts").then((m) => m.default),
  inject: () => import("./commands/inject.ts").then((m) => m.default),
  agent: () => import("./commands/agent.ts").then((m) => m.default),
  notifications: () => import("./commands/notifications.ts").then((m) => m.default),
  completion: () => import("./commands/completion.ts").then((m) => m.default),
  secret: () => import("./commands/secret.ts").then((m) => m.default),
  up: () => import("./commands/up.ts").then((m) => m.up),
  down: () => import("./commands/up.ts").then((m) => m.down),
};

/** Commands whose arguments all belong to another program (docker compose): never parsed here. */
export const passthroughCommands: Record<string, (args: string[]) => Promise<number>> = {
  up: (args) => import("./compose/run.ts").then((m) => m.runComposeVerb("up", args)),
  down: (args) => import("./compose/run.ts").then((m) => m.runComposeVerb("down", args)),
};

/** Internal commands: dispatched like the others, never listed in --help. */
export const hiddenCommands: Record<string, LazyCommand> = {
  provider: () => import("./commands/provider.ts").then((m) => m.default),
};

export const rootCommand = defineCommand({
  meta: {
    name: "dso",
    version: versionInfo().version,
    description: "Docker Secret Operator: secrets from AWS, Azure, Vault or files, delivered into containers in RAM",
  },
  args: { ...globalArgs },
  subCommands: commands,
});
