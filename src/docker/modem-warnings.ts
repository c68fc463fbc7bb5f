/**
 * docker-modem (5.0.7, the newest) calls Node's legacy `url.parse()` on every request to a
 * tcp:// DOCKER_HOST, so Bun prints `[DEP0169] DeprecationWarning: url.parse() ...` and suggests
 * `dso --trace-warnings`, a flag dso does not have. The warning is for docker-modem's authors:
 * the host it parses is one DSO already parsed with the WHATWG URL API (client.ts `tcpTarget`),
 * so the lenient parsing DEP0169 warns about never sees user input. Drop exactly that warning,
 * once, and pass every other warning through unchanged.
 */
const SUPPRESSED_CODE = "DEP0169";

let installed = false;

function warningCode(args: unknown[]): unknown {
  const [typeOrOptions, code] = args;
  if (typeOrOptions !== null && typeof typeOrOptions === "object") return (typeOrOptions as { code?: unknown }).code;
  return code;
}

export function silenceModemUrlParseWarning(): void {
  if (installed) return;
  installed = true;
  const original = process.emitWarning;
  process.emitWarning = function emitWarning(this: unknown, warning: string | Error, ...rest: unknown[]) {
    const code = warning instanceof Error ? ((warning as { code?: unknown }).code ?? warningCode(rest)) : warningCode(rest);
    if (code === SUPPRESSED_CODE) return;
    return (original as (...a: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
}
