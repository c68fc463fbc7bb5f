/**
 * Why this exists: Bun.serve does not tell a request handler who connected to its unix socket,
 * and the audit trail wants the caller's uid. The front owns the public socket (Bun.listen),
 * asks the kernel for the peer's uid (SO_PEERCRED) as each connection opens, and pipes that
 * connection's bytes unchanged to the internal HTTP server chosen for that uid (one private
 * socket per uid, in a 0700 directory: control-server.ts). The identity therefore comes from
 * the kernel, never from anything the client sends, and HTTP is not parsed here at all.
 */
import type { Socket, UnixSocketListener } from "bun";
import { peerCredentials } from "../os/libc.ts";

export interface PeerFrontOptions {
  socketPath: string;
  /** The private socket serving a peer with this uid; undefined when its uid could not be read. */
  upstreamFor: (uid: number | undefined) => string;
  log: { warn: (message: string, fields?: Record<string, unknown>) => void };
}

/** One client connection and the upstream connection that carries its bytes. */
interface Pipe {
  upstream?: Socket<Pipe>;
  /** Bytes not yet taken by the upstream (before it connects, or while it is full). */
  toUpstream: Uint8Array[];
  /** Bytes not yet taken by the client. */
  toClient: Uint8Array[];
  clientGone: boolean;
  upstreamGone: boolean;
}

/** Writes what the socket takes now and queues the rest (copied: the runtime may reuse its buffer). */
function send(socket: Socket<Pipe> | undefined, queue: Uint8Array[], chunk: Uint8Array): void {
  if (socket && queue.length === 0) {
    const written = Math.max(0, socket.write(chunk));
    if (written === chunk.byteLength) return;
    chunk = chunk.subarray(written);
  }
  queue.push(chunk.slice());
}

/** Writes queued bytes until the socket is full; true when the queue is empty. */
function flush(socket: Socket<Pipe>, queue: Uint8Array[]): boolean {
  while (queue.length > 0) {
    const chunk = queue[0]!;
    const written = Math.max(0, socket.write(chunk));
    if (written < chunk.byteLength) {
      queue[0] = chunk.subarray(written);
      return false;
    }
    queue.shift();
  }
  return true;
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

function connectUpstream(client: Socket<Pipe>, path: string, log: PeerFrontOptions["log"]): void {
  const pipe = client.data;
  void Bun.connect<Pipe>({
    unix: path,
    data: pipe,
    socket: {
      open(upstream) {
        if (pipe.clientGone && pipe.toUpstream.length === 0) {
          upstream.end();
          return;
        }
        pipe.upstream = upstream;
        if (flush(upstream, pipe.toUpstream) && pipe.clientGone) upstream.end();
      },
      data(_upstream, chunk) {
        if (!pipe.clientGone) send(client, pipe.toClient, chunk);
      },
      drain(upstream) {
        if (flush(upstream, pipe.toUpstream) && pipe.clientGone) upstream.end();
      },
      close() {
        pipe.upstreamGone = true;
        if (pipe.toClient.length === 0) client.end();
      },
      connectError(_upstream, error) {
        log.warn("control socket: internal server not reachable", { error: error.message });
        pipe.upstreamGone = true;
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
    data: { toUpstream: [], toClient: [], clientGone: false, upstreamGone: false },
    socket: {
      open(client) {
        // `data` starts as the listener's shared object: give each connection its own.
        client.data = { toUpstream: [], toClient: [], clientGone: false, upstreamGone: false };
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
        send(client.data.upstream, client.data.toUpstream, chunk);
      },
      drain(client) {
        if (flush(client, client.data.toClient) && client.data.upstreamGone) client.end();
      },
      close(client) {
        const pipe = client.data;
        pipe.clientGone = true;
        if (pipe.upstream && pipe.toUpstream.length === 0) pipe.upstream.end();
      },
      error() {},
    },
  });
}
