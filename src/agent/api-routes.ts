/** The /v1 routes of the control socket, from the contract in src/api/contract.ts. */
import { ROUTES, type ActionReport, type ContainerView, type InjectReport, type PlanReply, type RouteBody, type StatusReply } from "../api/contract.ts";
import type { Route } from "./control-server.ts";

/** What the routes need of the agent (the agent implements it; this file does not import it). */
export interface ControlApi {
  status(): StatusReply;
  containers(): Promise<ContainerView[]>;
  sync(container?: string): Promise<ActionReport[]>;
  rotate(secret: string): Promise<ActionReport[]>;
  inject(container: string, secrets: string[]): Promise<InjectReport>;
  plan(secret: string): Promise<PlanReply>;
}

export function apiRoutes(agent: ControlApi): Route[] {
  return [
    { ...ROUTES.status, handle: async () => agent.status() },
    { ...ROUTES.containers, handle: async () => ({ containers: await agent.containers() }) },
    { ...ROUTES.sync, handle: async (body) => ({ results: await agent.sync((body as RouteBody<"sync">).container) }) },
    { ...ROUTES.rotate, handle: async (body) => ({ results: await agent.rotate((body as RouteBody<"rotate">).secret) }) },
    {
      ...ROUTES.inject,
      handle: async (body) => {
        const { container, secrets } = body as RouteBody<"inject">;
        return agent.inject(container, secrets ?? []);
      },
    },
    { ...ROUTES.plan, handle: async (body) => agent.plan((body as RouteBody<"plan">).secret) },
  ];
}
