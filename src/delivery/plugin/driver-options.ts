/**
 * The `driver_opts` of a DSO volume (`docker volume create -d dso -o secrets=db,api -o uid=1000`).
 * The driver checks the shape of the options it understands itself; the rest is passed through to
 * the agent's resolver, which knows which secrets exist.
 */
import { SIGNAL_NAMES, STRATEGY_NAMES } from "../../config/schema.ts";
import type { SignalName, StrategyName } from "../../config/types.ts";
import { DsoError } from "../../errors.ts";
import { FILE_MODE_RULE, parseFileMode, parseOwnerId } from "../../util/file-rules.ts";
import { printable } from "../../util/printable.ts";
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

/** The secret names of a volume's options, or none when the options do not parse (never throws). */
export function secretNamesOf(opts: Readonly<Record<string, string>>): string[] {
  try {
    return parseDriverOptions(opts).secrets;
  } catch {
    return [];
  }
}

function normaliseSignal(raw: string): string {
  const upper = raw.trim().toUpperCase();
  return upper.startsWith("SIG") ? upper : `SIG${upper}`;
}

function parseChoice<T extends string>(raw: string, key: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(raw)) return raw as T;
  throw new DsoError("BAD_REQUEST", `volume option ${key}=${printable(raw)} must be one of ${choices.join(", ")}`);
}

function parseId(raw: string | undefined, key: string): number {
  if (raw === undefined || raw === "") return 0;
  const value = parseOwnerId(raw);
  if (value === undefined) throw new DsoError("BAD_REQUEST", `volume option ${key}=${printable(raw)} is not a numeric id`);
  return value;
}

function parseMode(raw: string | undefined): number {
  if (raw === undefined || raw === "") return DEFAULT_SECRET_MODE;
  const mode = parseFileMode(raw);
  if (mode === undefined) throw new DsoError("BAD_REQUEST", `volume option mode=${printable(raw)} is not ${FILE_MODE_RULE}`);
  return mode;
}

/** Every option a DSO volume understands; anything else is a typo or a value meant for another driver. */
export const DRIVER_OPTION_NAMES = ["secrets", "uid", "gid", "mode", "strategy", "signal"] as const;

/**
 * What `VolumeDriver.Create` must check, so `docker volume create -d dso` with a mistake fails
 * at once instead of at the first container start: every option is known, `secrets` names at
 * least one secret and no name twice, and uid/gid/mode parse. Throws a BAD_REQUEST DsoError
 * naming the option; returns the parsed options.
 */
export function validateDriverOptions(opts: Readonly<Record<string, string>>): VolumeFileOptions {
  for (const key of Object.keys(opts)) {
    if ((DRIVER_OPTION_NAMES as readonly string[]).includes(key)) continue;
    const near = DRIVER_OPTION_NAMES.find((name) => name.startsWith(key.toLowerCase().slice(0, 3)) || key.toLowerCase() === name);
    const hint = near ? ` (did you mean "${near}"?)` : "";
    throw new DsoError("BAD_REQUEST", `unknown volume option ${printable(key)}${hint}; a DSO volume takes ${DRIVER_OPTION_NAMES.join(", ")}`);
  }
  const parsed = parseDriverOptions(opts);
  if (parsed.secrets.length === 0) {
    throw new DsoError("BAD_REQUEST", "volume option secrets is required: name the secrets this volume holds, e.g. -o secrets=db_password,api_key", {
      hint: 'in docker run --mount, quote the field that holds a comma: --mount "type=volume,...,\\"volume-opt=secrets=a,b\\""',
    });
  }
  const twice = parsed.secrets.find((name, i) => parsed.secrets.indexOf(name) !== i);
  if (twice !== undefined) throw new DsoError("BAD_REQUEST", `volume option secrets names ${printable(twice)} twice`);
  return parsed;
}
