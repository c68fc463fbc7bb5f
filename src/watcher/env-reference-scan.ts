/**
 * Reading a container's `dso://` references without reading its environment: the inspect body
 * is taken as bytes, the `Env` array is walked byte by byte, only entries whose value is a
 * reference are decoded into strings, and every buffer is zeroed. Any other variable of any
 * container on the host (a database password set with `docker run -e`) never becomes a string in
 * the agent, where it could not be erased (test/e2e/memory.test.ts scans for it).
 */
import type Dockerode from "dockerode";

/** An inspect body larger than this is not read (Docker's own are a few KiB). */
export const MAX_INSPECT_BYTES = 4 * 1024 * 1024;

const ENV_KEY = new TextEncoder().encode('"Env":');
const PREFIXES = ["dso://", "dsofile://"].map((p) => new TextEncoder().encode(p));
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const EQUALS = 0x3d;
const OPEN = 0x5b;
const CLOSE = 0x5d;

function indexOf(bytes: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

/** Whether the entry's value (after its first `=`) starts with a reference prefix. */
function isReference(bytes: Uint8Array, start: number, end: number): boolean {
  let eq = -1;
  for (let i = start; i < end; i++) {
    if (bytes[i] === EQUALS) {
      eq = i;
      break;
    }
  }
  if (eq <= start) return false;
  return PREFIXES.some((p) => eq + 1 + p.length <= end && p.every((b, k) => bytes[eq + 1 + k] === b));
}

/**
 * The `VAR=dso://…` entries of `Config.Env` in a container inspect body (JSON bytes), and no
 * other entry. An unexpected shape yields what was found so far, never an error.
 */
export function referencesInInspectBody(bytes: Uint8Array): string[] {
  // The first `"Env":` followed by an array: a label named Env has a string value.
  let i = -1;
  for (let key = indexOf(bytes, ENV_KEY); key >= 0 && i < 0; key = indexOf(bytes, ENV_KEY, key + 1)) {
    let j = key + ENV_KEY.length;
    while (isSpace(bytes[j])) j++;
    if (bytes[j] === OPEN) i = j + 1;
  }
  if (i < 0) return [];
  const found: string[] = [];
  while (i < bytes.length) {
    const b = bytes[i];
    if (b === CLOSE) break;
    if (b !== QUOTE) {
      i++;
      continue;
    }
    const start = i + 1;
    let end = start;
    while (end < bytes.length && bytes[end] !== QUOTE) end += bytes[end] === BACKSLASH ? 2 : 1;
    if (end >= bytes.length) break;
    if (isReference(bytes, start, end)) {
      try {
        found.push(JSON.parse(new TextDecoder().decode(bytes.subarray(start - 1, end + 1))) as string);
      } catch {
        // not a JSON string after all: skipped
      }
    }
    i = end + 1;
  }
  return found;
}

/**
 * A container's reference entries, read from `GET /containers/{id}/json` as bytes that are zeroed
 * once scanned; undefined when the container cannot be inspected.
 */
export async function readEnvReferences(docker: Pick<Dockerode, "modem">, id: string): Promise<string[] | undefined> {
  const stream = await new Promise<NodeJS.ReadableStream | undefined>((resolve) => {
    docker.modem.dial(
      { path: `/containers/${encodeURIComponent(id)}/json?`, method: "GET", options: {}, isStream: true, statusCodes: { 200: true, 404: "no such container", 500: "server error" } },
      (error: unknown, res: unknown) => resolve(error ? undefined : (res as NodeJS.ReadableStream)),
    );
  });
  if (!stream) return undefined;
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_INSPECT_BYTES) {
        (stream as unknown as { destroy?: () => void }).destroy?.();
        return undefined;
      }
    }
    const body = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      body.set(c, at);
      at += c.length;
    }
    try {
      return referencesInInspectBody(body);
    } finally {
      body.fill(0);
    }
  } catch {
    return undefined;
  } finally {
    for (const c of chunks) c.fill(0);
  }
}
