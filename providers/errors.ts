import { DsoError, type ErrorCode } from "../src/errors.ts";
import type { RpcError, RpcErrorCode } from "../src/rpc/protocol.ts";

/** A provider failure with an RPC code; the message names the provider and never holds a value. */
export class ProviderError extends DsoError {
  readonly rpcCode: RpcErrorCode;
  readonly retryAfterMs?: number;

  constructor(code: RpcErrorCode, message: string, options?: { retryAfterMs?: number; cause?: unknown }) {
    super(code as ErrorCode, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.rpcCode = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

const SCRUBBERS: Array<[RegExp, string]> = [
  // AWS request ids and extended ids
  [/\b(request ?id|x-amz-request-id|x-amz-id-2|RequestId)[:=\s"]+[A-Za-z0-9+/=-]{8,}/gi, "$1=<scrubbed>"],
  // Access key ids (AKIA/ASIA...) and bearer tokens
  [/\b(AKIA|ASIA)[A-Z0-9]{12,}\b/g, "<access-key>"],
  [/\bBearer\s+[A-Za-z0-9._~+/=-]+/gi, "Bearer <scrubbed>"],
  // Vault tokens (hvs./s./b.)
  [/\b(hv[sb]|s|b)\.[A-Za-z0-9]{20,}\b/g, "<vault-token>"],
  // Azure correlation/request ids (GUIDs)
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, "<id>"],
];

export function scrubMessage(message: string): string {
  let out = message.split("\n")[0] ?? "";
  for (const [pattern, replacement] of SCRUBBERS) out = out.replace(pattern, replacement);
  return out.length > 500 ? `${out.slice(0, 500)}…` : out;
}

/** Turn anything a provider threw into a value-free RPC error. */
export function toRpcError(error: unknown, providerName: string): RpcError {
  if (error instanceof ProviderError) {
    return {
      code: error.rpcCode,
      message: scrubMessage(error.message),
      ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
    };
  }
  if (error instanceof DsoError && error.code === "CONFIG_INVALID") {
    return { code: "CONFIG_INVALID", message: scrubMessage(error.message) };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "INTERNAL", message: `provider ${providerName}: ${scrubMessage(message)}` };
}
