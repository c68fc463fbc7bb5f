/**
 * The leak sentinel (opt-in, `agent.leak_sentinel.enabled`): follows the output of the containers
 * DSO serves and reports when a value DSO delivered shows up in it — an application that logs
 * its own secret. Matching is the log redactor's (src/log/redact.ts): keyed hashes of each value,
 * never the value, checked over each output line decoded into a unit array that is zeroed after;
 * the line's bytes are zeroed too. A report names the container and the secret, never the value,
 * once per container and secret per REPORT_EVERY_MS (every sighting still counts in the metric).
 */
import type Dockerode from "dockerode";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { findSecretValues } from "../log/redact.ts";

/** A longer line is scanned in pieces of this size (a value split across two pieces is missed). */
export const MAX_LINE_BYTES = 64 * 1024;
export const REPORT_EVERY_MS = 10 * 60_000;
const HEADER_BYTES = 8;
const NEWLINE = 0x0a;

export interface ServedContainer {
  id: string;
  name: string;
}

export interface LeakSighting {
  container: ServedContainer;
  /** The secret's name (the owner the value was registered under), or undefined for a credential. */
  secret?: string;
  /** True when this sighting is also reported (warned and audited), false when only counted. */
  reported: boolean;
}

export interface LeakSentinelDeps {
  docker: Dockerode;
  log: Pick<FieldLogger, "warn" | "debug">;
  onSighting(sighting: LeakSighting): void;
  now?: () => number;
}

/** Splits a byte stream into lines (each at most MAX_LINE_BYTES), zeroing what it consumed. */
export class LineSplitter {
  private buffer = new Uint8Array(new ArrayBuffer(MAX_LINE_BYTES));
  private size = 0;
  constructor(private readonly onLine: (line: Uint8Array) => void) {}

  push(chunk: Uint8Array): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      let piece = chunk.subarray(start, end);
      while (piece.length > 0) {
        const room = MAX_LINE_BYTES - this.size;
        this.buffer.set(piece.subarray(0, room), this.size);
        this.size += Math.min(room, piece.length);
        piece = piece.subarray(Math.min(room, piece.length));
        if (this.size === MAX_LINE_BYTES) this.flush();
      }
      if (nl === -1) break;
      this.flush();
      start = nl + 1;
    }
    chunk.fill(0);
  }

  flush(): void {
    if (this.size > 0) this.onLine(this.buffer.subarray(0, this.size));
    this.buffer.fill(0, 0, this.size);
    this.size = 0;
  }
}

/** Docker's multiplexed log stream (no TTY): 8-byte frame headers, payloads out. */
export class Demuxer {
  private header = new Uint8Array(HEADER_BYTES);
  private headerFill = 0;
  private left = 0;
  constructor(private readonly onPayload: (bytes: Uint8Array) => void) {}

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.left === 0) {
        const take = Math.min(HEADER_BYTES - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        if (this.headerFill < HEADER_BYTES) return;
        this.left = new DataView(this.header.buffer).getUint32(4);
        this.headerFill = 0;
        continue;
      }
      const take = Math.min(this.left, chunk.length - at);
      this.onPayload(chunk.slice(at, at + take));
      this.left -= take;
      at += take;
    }
  }
}

export class LeakSentinel {
  private readonly followers = new Map<string, { stop(): void }>();
  private readonly lastReport = new Map<string, number>();
  private stopped = false;

  constructor(private readonly deps: LeakSentinelDeps) {}

  /** Follows exactly these containers (the ones DSO serves now). */
  sync(containers: readonly ServedContainer[]): void {
    if (this.stopped) return;
    const wanted = new Map(containers.map((c) => [c.id, c]));
    for (const [id, follower] of this.followers) {
      if (wanted.has(id)) continue;
      follower.stop();
      this.followers.delete(id);
    }
    for (const c of wanted.values()) if (!this.followers.has(c.id)) this.follow(c);
  }

  stop(): void {
    this.stopped = true;
    for (const follower of this.followers.values()) follower.stop();
    this.followers.clear();
  }

  following(): number {
    return this.followers.size;
  }

  /** One line of a container's output. */
  scan(container: ServedContainer, line: Uint8Array): void {
    const { owners, unowned } = findSecretValues(line);
    const secrets: Array<string | undefined> = [...owners.map(secretOfOwner), ...(unowned ? [undefined] : [])];
    for (const secret of secrets) {
      const key = `${container.id}\0${secret ?? ""}`;
      const now = (this.deps.now ?? Date.now)();
      const last = this.lastReport.get(key);
      const reported = last === undefined || now - last >= REPORT_EVERY_MS;
      if (reported) this.lastReport.set(key, now);
      this.deps.onSighting({ container, ...(secret === undefined ? {} : { secret }), reported });
    }
  }

  private follow(container: ServedContainer): void {
    let stream: NodeJS.ReadableStream | undefined;
    let stopped = false;
    const follower = {
      stop: () => {
        stopped = true;
        (stream as { destroy?: () => void } | undefined)?.destroy?.();
      },
    };
    this.followers.set(container.id, follower);
    void (async () => {
      try {
        const handle = this.deps.docker.getContainer(container.id);
        const tty = Boolean(((await handle.inspect()) as { Config?: { Tty?: boolean } }).Config?.Tty);
        if (stopped) return;
        stream = (await handle.logs({ follow: true, stdout: true, stderr: true, since: Math.floor(Date.now() / 1000) })) as unknown as NodeJS.ReadableStream;
        if (stopped) return follower.stop();
        const lines = new LineSplitter((line) => this.scan(container, line));
        const demux = new Demuxer((payload) => lines.push(payload));
        stream.on("data", (chunk: Buffer) => {
          const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          if (tty) lines.push(bytes);
          else {
            demux.push(bytes);
            bytes.fill(0);
          }
        });
        await new Promise<void>((resolve) => {
          stream!.on("end", resolve);
          stream!.on("close", resolve);
          stream!.on("error", resolve);
        });
        lines.flush();
      } catch (error) {
        if (!stopped) this.deps.log.debug("leak sentinel could not follow a container's output", { container: container.name, error: describeError(error) });
      } finally {
        if (this.followers.get(container.id) === follower) this.followers.delete(container.id);
      }
    })();
  }
}

/** Owners are "<provider>/<ref key>", the ref key "<name>@<version>#<stage>": the secret's name. */
function secretOfOwner(owner: string): string {
  const ref = owner.slice(owner.indexOf("/") + 1);
  return ref.slice(0, ref.lastIndexOf("@"));
}
