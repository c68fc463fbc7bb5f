/** The shapes of secret values as the agent holds them during one injection window. */
import type { FetchItem, SecretRef, SecretValue } from "../rpc/protocol.ts";

export interface FetchedSecret {
  value: SecretValue;
  fingerprint: string;
  version?: string;
}

/** A provider process as the value side sees it (the supervisor implements it). */
export interface SecretFetcher {
  fetch(refs: SecretRef[], signal?: AbortSignal): Promise<FetchItem[]>;
}

/** Values of one fetch, by secret name, and one line per secret that could not be fetched. */
export interface FetchResult {
  values: Map<string, FetchedSecret>;
  errors: string[];
}
