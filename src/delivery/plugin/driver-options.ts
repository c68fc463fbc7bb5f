/**
 * The `driver_opts` of a DSO volume (`docker volume create -d dso -o secrets=db,api -o uid=1000`).
 * The driver checks the shape of the options it understands itself; the rest is passed through to
 * the agent's resolver, which knows which secrets exist.
 */
import { SIGNAL_NAMES, STRATEGY_NAMES } from "../../config/schema.ts";
import type { SignalName, StrategyName } from "../../config/types.ts";
import { DsoError } from "../../errors.ts";
import { DEFAULT_SECRET_MODE } from "../types.ts";

export interface VolumeFileOptions {
  /** Secret names listed in `secrets=` (comma separated), in order, empty when absent. */
  secrets: string[];
  uid: number;
  gid: number;
  mode: number;
  /** What to do with containers that mount the volume when its files change (default none). */
  strategy?: StrategyName;
  signal?: SignalName;
}

const MAX_ID = 0xffff_fffe;

export function parseDriverOptions(opts: Readonly<Record<string, string>>): VolumeFileOptions {
  return {
    secrets: (opts.secrets ?? "")
      .split(",")
      .map((name) => name.trim())
      .filter(Boolean),
    uid: parseId(opts.uid, "uid"),
    gid: parseId(opts.gid, "gid"),
    mode: parseMode(opts.mode),
    ...(opts.strategy ? { strategy: parseChoice(opts.strategy, "strategy", STRATEGY_NAMES) } : {}),
    ...(opts.signal ? { signal: parseChoice(normaliseSignal(opts.signal), "signal", SIGNAL_NAMES) } : {}),
  };
}

function normaliseSignal(raw: string): string {
  const upper = raw.trim().toUpperCase();
  return upper.startsWith("SIG") ? upper : `SIG${upper}`;
}

function parseChoice<T extends string>(raw: string, key: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(raw)) return raw as T;
  throw new DsoError("BAD_REQUEST", `volume option ${key}=${JSON.stringify(raw.slice(0, 64))} must be one of ${choices.join(", ")}`);
}

function parseId(raw: string | undefined, key: string): number {
  if (raw === undefined || raw === "") return 0;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value > MAX_ID) throw new DsoError("BAD_REQUEST", `volume option ${key}=${JSON.stringify(raw)} is not a numeric id`);
  return value;
}

function parseMode(raw: string | undefined): number {
  if (raw === undefined || raw === "") return DEFAULT_SECRET_MODE;
  if (!/^0?[0-7]{3,4}$/.test(raw)) throw new DsoError("BAD_REQUEST", `volume option mode=${JSON.stringify(raw)} is not an octal mode like 0400`);
  return Number.parseInt(raw, 8);
}
