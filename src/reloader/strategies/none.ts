import type { Strategy } from "./types.ts";

/** Files are updated in place; the application picks them up itself (e.g. it re-reads per request). */
export const noneStrategy: Strategy = {
  name: "none",
  async apply(ctx) {
    return { strategy: "none", action: "files-only", containerId: ctx.containerId };
  },
};
