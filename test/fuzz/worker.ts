/** Worker thread for the synchronous fuzz targets (see test/support/fuzz.ts workerCheck). */
import { crash } from "../support/fuzz.ts";
import { CHECKS } from "./checks.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<{ id: number; target: string; input: unknown }>) => {
  const { id, target, input } = event.data;
  const check = CHECKS[target];
  let verdict;
  try {
    verdict = check ? await check(input as never) : crash(new Error(`no fuzz target ${target}`));
  } catch (error) {
    verdict = crash(error);
  }
  self.postMessage({ id, verdict });
};
