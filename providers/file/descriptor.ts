/** The file provider as the agent side knows it (see ProviderDescriptor). Copy this with the folder. */
import type { ProviderDescriptor } from "../types.ts";

export const fileDescriptor: ProviderDescriptor = {
  type: "file",
  configKeys: ["path"],
  authParamKeys: [],
  authMethods: [],
  env: [],
  credentials: [],
  load: () => import("./index.ts").then((m) => m.fileProvider),
};
