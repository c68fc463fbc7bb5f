/** The /v1 routes of the control socket. Bodies are validated here; nothing returns a value. */
import * as v from "valibot";
import { DsoError } from "../errors.ts";
import type { Route } from "./control-server.ts";
import type { Agent } from "./agent.ts";

const Name = v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(2048, "is too long"));

export const SyncBody = v.strictObject({ container: v.optional(Name) });
export const SecretBody = v.strictObject({ secret: Name });
export const InjectBody = v.strictObject({ container: Name, secrets: v.optional(v.array(Name)) });

export function apiRoutes(agent: Agent): Route[] {
  return [
    { method: "GET", path: "/v1/status", handle: async () => agent.status() },
    { method: "GET", path: "/v1/containers", handle: async () => ({ containers: agent.reloader.list() }) },
    {
      method: "POST",
      path: "/v1/sync",
      body: SyncBody,
      handle: async (body) => {
        const { container } = body as v.InferOutput<typeof SyncBody>;
        return { results: await agent.sync(container) };
      },
    },
    {
      method: "POST",
      path: "/v1/rotate",
      body: SecretBody,
      handle: async (body) => {
        const { secret } = body as v.InferOutput<typeof SecretBody>;
        if (!agent.store.get(secret)) throw new DsoError("SECRET_NOT_FOUND", `secret "${secret}" is not known to the agent`);
        return { results: await agent.reloader.rotate([secret]) };
      },
    },
    {
      method: "POST",
      path: "/v1/inject",
      body: InjectBody,
      handle: async (body) => {
        const { container, secrets } = body as v.InferOutput<typeof InjectBody>;
        return agent.reloader.inject(container, secrets ?? []);
      },
    },
    {
      method: "POST",
      path: "/v1/plan",
      body: SecretBody,
      handle: async (body) => {
        const { secret } = body as v.InferOutput<typeof SecretBody>;
        return agent.plan(secret);
      },
    },
  ];
}
