/**
 * Stale legacy volume drivers: a socket in dockerd's plugin directory that nothing listens on
 * (an agent that stopped, the host agent left behind when moving to the managed plugin). dockerd
 * takes `<name>.sock` for the driver `<name>`, remembers it until it restarts, and spends ~30 s on it
 * whenever a volume of that driver (or any volume, by name) is looked up (docs/deploy.md).
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { CheckResult } from "./types.ts";

export const LEGACY_PLUGIN_DIR = "/run/docker/plugins";
const CONNECT_TIMEOUT_MS = 1_000;

/** Whether something accepts a connection on the unix socket. */
async function answers(path: string): Promise<boolean> {
  try {
    const socket = await Promise.race([
      Bun.connect({ unix: path, socket: { data() {} } }),
      Bun.sleep(CONNECT_TIMEOUT_MS).then(() => undefined),
    ]);
    socket?.end();
    return socket !== undefined;
  } catch {
    return false;
  }
}

export async function checkLegacyDrivers(dir: string = LEGACY_PLUGIN_DIR): Promise<CheckResult[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const stale: string[] = [];
  for (const name of names.filter((n) => n.endsWith(".sock"))) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info?.isSocket() && !(await answers(path))) stale.push(path);
  }
  if (stale.length === 0) return [];
  return [
    {
      check: "legacy drivers",
      status: "warn",
      detail: `nothing answers on ${stale.join(", ")}: dockerd takes each for a volume driver and waits ~30 s on it; remove it and restart dockerd (it remembers the driver until then), e.g. after moving to the managed plugin`,
    },
  ];
}
