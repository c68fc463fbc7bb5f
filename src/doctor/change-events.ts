/**
 * `dso doctor`: each `providers.<name>.events` queue is read the way the agent reads it, by the
 * provider process with the provider's credentials (the doctor holds none itself): reachable
 * and permitted (`events_status`), and the oldest waiting message younger than `events.max_age`
 * (older means nothing consumes the queue: is the agent running, is it behind?).
 */
import type { DsoConfig, ProviderConfig } from "../config/types.ts";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { ProviderProcess } from "../rpc/supervisor.ts";
import type { CheckResult } from "./types.ts";

const EVENTS_CHECK_TIMEOUT_MS = 15_000;
const quiet: FieldLogger = { debug() {}, info() {}, warn() {}, error() {} };

type StatusOf = (spec: ProviderConfig) => Promise<{ waiting?: number; oldestAgeSeconds?: number }>;

async function statusFromProvider(spec: ProviderConfig, env: Record<string, string | undefined>): Promise<{ waiting?: number; oldestAgeSeconds?: number }> {
  const process = new ProviderProcess({
    configure: {
      name: spec.name,
      type: spec.type,
      ...(spec.region ? { region: spec.region } : {}),
      auth: { ...(spec.auth.method ? { method: spec.auth.method } : {}), params: spec.auth.params },
      config: spec.config,
      events: { queue: spec.events!.queue },
    },
    env,
    callTimeoutMs: EVENTS_CHECK_TIMEOUT_MS,
    log: quiet,
  });
  try {
    return await process.call("events_status", {}, AbortSignal.timeout(EVENTS_CHECK_TIMEOUT_MS));
  } finally {
    await process.stop();
  }
}

const minutes = (ms: number) => `${Math.round(ms / 60_000)}m`;

export async function checkChangeEvents(config: DsoConfig | undefined, env: Record<string, string | undefined>, statusOf: StatusOf = (spec) => statusFromProvider(spec, env)): Promise<CheckResult[]> {
  const specs = Object.values(config?.providers ?? {}).filter((p) => p.events);
  return Promise.all(
    specs.map(async (spec): Promise<CheckResult> => {
      const check = `change events (${spec.name})`;
      try {
        const status = await statusOf(spec);
        const age = (status.oldestAgeSeconds ?? 0) * 1000;
        if (age > spec.events!.maxAgeMs) {
          const of = status.waiting === undefined ? "waiting messages" : `${status.waiting} waiting messages`;
          return { check, status: "warn", detail: `the oldest of the ${of} is ${minutes(age)} old (events.max_age ${minutes(spec.events!.maxAgeMs)}): nothing is consuming the queue (is the agent running?) or it is behind; polling still runs` };
        }
        const waiting = status.waiting === undefined ? (status.oldestAgeSeconds === undefined ? "none seen waiting" : `the oldest seen waiting is ${Math.round(status.oldestAgeSeconds)} s old`) : `${status.waiting} waiting`;
        return { check, status: "ok", detail: `queue readable with the provider's credentials, ${waiting}` };
      } catch (error) {
        return { check, status: "fail", detail: `queue not readable: ${describeError(error)}; changes are found by polling only` };
      }
    }),
  );
}
