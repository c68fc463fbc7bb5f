/**
 * Keys the Go DSO documents (or its own schema lists) that this DSO does not use. They are
 * accepted so existing files keep loading, and each one present gets a warning; the Go DSO
 * ignored most of them silently (its defect §8.10).
 */
import type { TreePath } from "./env-expand.ts";
import { isMapping } from "../util/is-mapping.ts";

export const IGNORED_MESSAGE = "ignored: DSO does not use this key";

const IGNORED_KEYS: { path: string[]; why?: string }[] = [
  { path: ["mode"] },
  { path: ["runtime"] },
  { path: ["logging"], why: "set the log level with --log-level or DSO_LOG_LEVEL" },
  { path: ["proxy"], why: "it does not proxy host ports" },
  { path: ["agent", "refresh_interval"], why: "use agent.watch.polling_interval" },
  { path: ["agent", "auto_sync"] },
  { path: ["agent", "restart_strategy"], why: "use agent.rotation.strategy" },
  { path: ["agent", "webhook"], why: "use agent.watch.webhook" },
  { path: ["agent", "watch", "mode"] },
  { path: ["agent", "watch", "webhook", "endpoint"] },
  { path: ["agent", "rotation", "enabled"], why: "use defaults.rotation.enabled" },
  { path: ["agent", "rotation", "max_parallel"] },
  { path: ["defaults", "rotation", "signal"], why: "use agent.rotation.signal" },
  { path: ["defaults", "rotation", "health_check_timeout"], why: "use agent.rotation.health_check_timeout" },
];

export function isIgnoredPath(path: TreePath): boolean {
  return IGNORED_KEYS.some((k) => k.path.length === path.length && k.path.every((seg, i) => seg === path[i]));
}


/** The ignored keys present in a parsed document, with the warning text for each. */
export function findIgnoredKeys(doc: unknown): { path: string[]; message: string }[] {
  const found: { path: string[]; message: string }[] = [];
  for (const key of IGNORED_KEYS) {
    let node: unknown = doc;
    for (const seg of key.path.slice(0, -1)) node = isMapping(node) ? node[seg] : undefined;
    if (!isMapping(node) || !(key.path.at(-1)! in node)) continue;
    found.push({ path: key.path, message: key.why ? `${IGNORED_MESSAGE} (${key.why})` : IGNORED_MESSAGE });
  }
  return found;
}
