/**
 * Why this exists: Bun.serve does not tell a request handler who connected to its unix socket,
 * and the audit trail wants the caller's uid. The front owns the public socket (Bun.listen),
 * asks the kernel for the peer's uid (SO_PEERCRED) as each connection opens, and pipes that
 * connection's bytes unchanged to the internal HTTP server chosen for that uid (one private
 * socket per uid, in a 0700 directory: control-server.ts). The identity therefore comes from
 * the kernel, never from anything the client sends, and HTTP is not parsed here at all.
 *
 * Bounded: each direction holds at most HIGH_WATER_BYTES in memory; past that the side that
 * sends is paused (it stops being read, so the kernel's socket buffers fill and the sender
 * waits) until the other side has taken the bytes. A client streaming a gigabyte therefore costs
 * the agent a few hundred KiB, not the gigabyte. Bytes for a side that is gone are dropped.
 */
import type { Socket, UnixSocketListener } from "bun";
import { peerCredentials } from "../os/libc.ts";

export interface PeerFrontOptions {
  socketPath: string;
  /** The private socket serving a peer with this uid; undefined when its uid could not be read. */
  upstreamFor: (uid: number | undefined) => string;
  log: { warn: (message: string, fields?: Record<string, unknown>) => void };
}

/** Bytes queued per direction before its sender is paused. */
export const HIGH_WATER_BYTES = 256 * 1024;
/** Bytes one side has not taken yet (copied: the runtime may reuse its buffer). */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  bytes = 0;

  get empty(): boolean {
    return this.chunks.length === 0;
  }

  get full(): boolean {
    return this.bytes >= HIGH_WATER_BYTES;
  }

  /** Writes what `socket` takes now (when nothing is queued before it) and queues the rest. */
  send(socket: Socket<Pipe> | undefined, chunk: Uint8Array): void {
    if (socket && this.empty) {
      const written = Math.max(0, socket.write(chunk));
      if (written === chunk.byteLength) return;
      chunk = chunk.subarray(written);
    }
    this.chunks.push(chunk.slice());
    this.bytes += chunk.byteLength;
  }

  /** Writes queued bytes until the socket is full; true when the queue is empty. */
  flush(socket: Socket<Pipe>): boolean {
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      const written = Math.max(0, socket.write(chunk));
      this.bytes -= written;
      if (written < chunk.byteLength) {
        this.chunks[0] = chunk.subarray(written);
        return false;
      }
      this.chunks.shift();
    }
    return true;
  }

  clear(): void {
    this.chunks = [];
    this.bytes = 0;
  }
}

/** One client connection and the upstream connection that carries its bytes. */
interface Pipe {
  client?: Socket<Pipe>;
  upstream?: Socket<Pipe>;
  /** Client bytes the upstream has not taken (before it connects, or while it is full). */
  toUpstream: ByteQueue;
  /** Upstream bytes the client has not taken. */
  toClient: ByteQueue;
  clientGone: boolean;
  upstreamGone: boolean;
}

function newPipe(): Pipe {
  return { toUpstream: new ByteQueue(), toClient: new ByteQueue(), clientGone: false, upstreamGone: false };
}

function uidOf(socket: Socket<unknown>): number | undefined {
  const fd = (socket as unknown as { fd?: unknown }).fd;
  if (typeof fd !== "number" || fd < 0) return undefined;
  try {
    return peerCredentials(fd).uid;
  } catch {
    return undefined;
  }
}

/** The upstream took what was queued for it: read the client again, or end the upstream once the client is gone. */
function upstreamDrained(pipe: Pipe, upstream: Socket<Pipe>): void {
  if (!pipe.toUpstream.flush(upstream)) return;
  if (pipe.clientGone) upstream.end();
  else pipe.client?.resume();
}

/** The client took what was queued for it: read the upstream again, or end the client once the upstream is gone. */
function clientDrained(pipe: Pipe, client: Socket<Pipe>): void {
  if (!pipe.toClient.flush(client)) return;
  if (pipe.upstreamGone) client.end();
  else pipe.upstream?.resume();
}

function connectUpstream(client: Socket<Pipe>, path: string, log: PeerFrontOptions["log"]): void {
  const pipe = client.data;
  void Bun.connect<Pipe>({
    unix: path,
    data: pipe,
    socket: {
      open(upstream) {
        if (pipe.clientGone && pipe.toUpstream.empty) {
          upstream.end();
          return;
        }
        pipe.upstream = upstream;
        upstreamDrained(pipe, upstream);
      },
      data(upstream, chunk) {
        if (pipe.clientGone) return;
        pipe.toClient.send(client, chunk);
        if (pipe.toClient.full) upstream.pause();
      },
      drain(upstream) {
        upstreamDrained(pipe, upstream);
      },
      close() {
        pipe.upstreamGone = true;
        pipe.toUpstream.clear();
        if (pipe.toClient.empty) client.end();
        else client.resume();
      },
      connectError(_upstream, error) {
        log.warn("control socket: internal server not reachable", { error: error.message });
        pipe.upstreamGone = true;
        pipe.toUpstream.clear();
        client.end();
      },
      error() {},
    },
  }).catch(() => {});
}

/** Listens on `socketPath` (the caller sets umask, mode and group around it, as for any socket). */
export function startPeerFront(options: PeerFrontOptions): UnixSocketListener<Pipe> {
  return Bun.listen<Pipe>({
    unix: options.socketPath,
    data: newPipe(),
    socket: {
      open(client) {
        // `data` starts as the listener's shared object: give each connection its own.
        client.data = { ...newPipe(), client };
        let upstreamPath: string;
        try {
          upstreamPath = options.upstreamFor(uidOf(client));
        } catch (error) {
          options.log.warn("control socket: no internal server for this caller", { error: (error as Error).message });
          client.end();
          return;
        }
        connectUpstream(client, upstreamPath, options.log);
      },
      data(client, chunk) {
        const pipe = client.data;
        // Nobody left to take them: dropped (the client is being ended).
        if (pipe.upstreamGone) return;
        pipe.toUpstream.send(pipe.upstream, chunk);
        if (pipe.toUpstream.full) client.pause();
      },
      drain(client) {
        clientDrained(client.data, client);
      },
      close(client) {
        const pipe = client.data;
        pipe.clientGone = true;
        pipe.toClient.clear();
        pipe.upstream?.resume();
        if (pipe.upstream && pipe.toUpstream.empty) pipe.upstream.end();
      },
      error() {},
    },
  });
}
