/** The /v1 routes of the control socket. Bodies are validated here; nothing returns a value. */
import * as v from "valibot";
import type { ActionReport, InjectReport } from "../reloader/reconciler.ts";
import type { ContainerView } from "../reloader/container-status.ts";
import type { Route } from "./control-server.ts";

const Name = v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(2048, "is too long"));

export const SyncBody = v.strictObject({ container: v.optional(Name) });
export const SecretBody = v.strictObject({ secret: Name });
export const InjectBody = v.strictObject({ container: Name, secrets: v.optional(v.array(Name)) });

/** What the routes need of the agent (the agent implements it; this file does not import it). */
export interface ControlApi {
  status(): unknown;
  containers(): Promise<ContainerView[]>;
  sync(container?: string): Promise<ActionReport[]>;
  rotate(secret: string): Promise<ActionReport[]>;
  inject(container: string, secrets: string[]): Promise<InjectReport>;
  plan(secret: string): Promise<unknown>;
}

export function apiRoutes(agent: ControlApi): Route[] {
  return [
    { method: "GET", path: "/v1/status", handle: async () => agent.status() },
    { method: "GET", path: "/v1/containers", handle: async () => ({ containers: await agent.containers() }) },
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
        return { results: await agent.rotate(secret) };
      },
    },
    {
      method: "POST",
      path: "/v1/inject",
      body: InjectBody,
      handle: async (body) => {
        const { container, secrets } = body as v.InferOutput<typeof InjectBody>;
        return agent.inject(container, secrets ?? []);
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
