/**
 * The file provider as the agent side knows it (see ProviderDescriptor), with the rules of its
 * config values, which `dso config validate` and the provider (index.ts) share. Copy this with
 * the folder.
 */
import { isAbsolute } from "node:path";
import * as v from "valibot";
import { configValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

export const fileConfigSchema = v.object({
  path: v.optional(configValue<string>((raw) => (isAbsolute(raw) ? { value: raw } : { problem: "must be an absolute path" }))),
});

export const fileDescriptor: ProviderDescriptor = {
  type: "file",
  config: fileConfigSchema,
  authParams: v.object({}),
  authMethods: [],
  env: [],
  credentials: [],
  load: () => import("./index.ts").then((m) => m.fileProvider),
};
