/**
 * The types every `dso doctor` check shares: a check's result and the context the checks fill in
 * as they run. Apart from checks.ts so the check modules import types, not each other.
 */
import type { DsoConfig } from "../config/types.ts";
import type { DockerConnection } from "../docker/client.ts";

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
}

/** What `GET /v1/status` (read through the contract's client) says about the agent process. */
export interface AgentProcessReport {
  pid?: number;
  hardening?: { dumpable: boolean; coreDumps: boolean };
  /** Pids of its running provider processes. */
  providerPids: number[];
}

export interface DoctorContext {
  env: Record<string, string | undefined>;
  configFlag?: string;
  /** --socket; else $DSO_SOCKET, agent.socket from the config, the default. */
  socketFlag?: string;
  /** Loaded by the config check; later checks read socket and paths from it. */
  config?: DsoConfig;
  /** Set by the Docker check when the daemon answered. */
  docker?: DockerConnection;
  /** Set by the agent check when an agent answered: its pid, hardening and provider pids. */
  agent?: AgentProcessReport;
}
