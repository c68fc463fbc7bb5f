/**
 * The file provider as the agent side knows it (see ProviderDescriptor), with the rules of its
 * config values, which `dso config validate` and the provider (index.ts) share. Copy this with
 * the folder.
 */
import * as v from "valibot";
import { configValue } from "../config-values.ts";
import type { ProviderDescriptor } from "../types.ts";

/**
 * A relative `path` (the Go DSO's `./.secrets`) is resolved against the directory of the dso.yaml
 * that names it when the file is loaded (src/config/parse.ts), so the provider always gets an
 * absolute one.
 */
export const fileConfigSchema = v.object({
  path: v.optional(configValue<string>((raw) => (raw.trim() !== "" ? { value: raw } : { problem: "must not be empty" }))),
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
