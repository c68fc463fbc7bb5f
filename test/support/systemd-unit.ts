/**
 * Reads the settings of a systemd unit file (deploy/dso.service, deploy/run-dso-volumes.mount) so
 * tests reproduce the restrictions the unit really sets instead of a copy that could drift.
 */
import { readFileSync } from "node:fs";

/** Key → every value it is given (space-separated lists split), across all sections. */
export function unitSettings(path: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const raw of readFileSync(path, "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";") || line.startsWith("[")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const values = line.slice(eq + 1).trim().split(/\s+/).filter(Boolean);
    settings.set(key, [...(settings.get(key) ?? []), ...values]);
  }
  return settings;
}

/** The one value of a key, or throw (the unit must set it). */
export function unitValue(settings: Map<string, string[]>, key: string): string {
  const values = settings.get(key);
  if (!values?.length) throw new Error(`the unit sets no ${key}=`);
  return values.join(" ");
}

/** capability(7) numbers of the names CapabilityBoundingSet= may list here. */
export const CAPABILITY_BITS: Record<string, number> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_NET_BIND_SERVICE: 10,
  CAP_IPC_LOCK: 14,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_RESOURCE: 24,
};

export function capabilityMask(names: string[]): bigint {
  let mask = 0n;
  for (const name of names) {
    const bit = CAPABILITY_BITS[name];
    if (bit === undefined) throw new Error(`unknown capability ${name}: add it to CAPABILITY_BITS`);
    mask |= 1n << BigInt(bit);
  }
  return mask;
}
