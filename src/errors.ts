/**
 * The one error family of DSO. `code` is stable: it is the log field, the RPC error code and
 * the API error code. Messages say what to do and never carry a secret value.
 */
export const ERROR_CODES = [
  "USAGE",
  "CONFIG_NOT_FOUND",
  "CONFIG_INVALID",
  "DOCKER_UNREACHABLE",
  "DOCKER_API",
  "PROVIDER_UNKNOWN",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_TIMEOUT",
  "PROVIDER_AUTH",
  "PROVIDER_THROTTLED",
  "SECRET_NOT_FOUND",
  "RPC_PROTOCOL",
  "DELIVERY_REFUSED",
  "DELIVERY_FAILED",
  "AGENT_UNREACHABLE",
  "BAD_REQUEST",
  "FORBIDDEN",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(code: unknown): code is ErrorCode {
  return (ERROR_CODES as readonly unknown[]).includes(code);
}

export class DsoError extends Error {
  readonly code: ErrorCode;
  /** A short hint on how to fix it, printed after the message. */
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DsoError";
    this.code = code;
    this.hint = options?.hint;
  }
}

/** Usage errors (unknown command or flag, bad argument) exit 2; every other failure exits 1. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof DsoError && error.code === "USAGE") return 2;
  // citty's own argument errors (missing positional, bad enum value) are usage errors too.
  if (error instanceof Error && error.name === "CLIError") return 2;
  return 1;
}

/**
 * The line the CLI prints for a failure: `dso: SECRET_NOT_FOUND: secret db was not found ...`.
 * The code is left out of usage errors, whose message already says what to type.
 */
export function cliErrorLine(error: unknown): string {
  const code = error instanceof DsoError && error.code !== "USAGE" ? `${error.code}: ` : "";
  return `dso: ${code}${describeError(error)}`;
}

/** A one-line description of any thrown value, safe to print. */
export function describeError(error: unknown): string {
  if (error instanceof DsoError) return error.hint ? `${error.message} (${error.hint})` : error.message;
  if (error instanceof Error) return error.message.split("\n")[0] ?? error.name;
  return String(error);
}
