/**
 * The few C library calls DSO makes itself, through bun:ffi, so that no mode of the agent needs
 * an external binary (`mount` is absent from distroless images and from the managed plugin's
 * rootfs). One table of symbols; add a call (prctl, setrlimit, ...) by adding a row to
 * LIBC_SYMBOLS and a small typed wrapper below. Every wrapper reads errno right after the call
 * and throws a LibcError naming the call, the errno name and the kernel's message.
 */
import { CString, dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";

/** glibc's soname first; musl's loader is the C library itself. */
const LIBC_SONAMES = ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`, "libc.so"];

const LIBC_SYMBOLS = {
  mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  mlock: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  munlock: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  sysconf: { args: [FFIType.i32], returns: FFIType.i64 },
  flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  pipe2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  dup2: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  opendir: { args: [FFIType.ptr], returns: FFIType.ptr },
  readdir: { args: [FFIType.ptr], returns: FFIType.ptr },
  closedir: { args: [FFIType.ptr], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
} as const;

type LibcSymbols = ReturnType<typeof dlopen<typeof LIBC_SYMBOLS>>["symbols"];

/** errno values the callers tell apart (asm-generic/errno-base.h; the same on x64 and arm64). */
export const ERRNO = { EPERM: 1, ENOENT: 2, EAGAIN: 11, EBUSY: 16, EINVAL: 22, ENOSYS: 38 } as const;
const ERRNO_NAMES = new Map<number, string>(Object.entries(ERRNO).map(([name, value]) => [value, name]));

/** umount2(2) flags. */
export const MNT_DETACH = 2;
/** mount(2) flags (linux/mount.h). */
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;

export class LibcError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${call} failed: ${detail}`);
    this.name = "LibcError";
  }
}

let loaded: { symbols: LibcSymbols } | { error: string } | undefined;

function load(): LibcSymbols {
  loaded ??= open();
  if ("error" in loaded) throw new LibcError("dlopen", 0, loaded.error);
  return loaded.symbols;
}

function open(): { symbols: LibcSymbols } | { error: string } {
  const failures: string[] = [];
  for (const soname of LIBC_SONAMES) {
    try {
      return { symbols: dlopen(soname, LIBC_SYMBOLS).symbols };
    } catch (error) {
      failures.push(`${soname}: ${(error as Error).message}`);
    }
  }
  return { error: `no C library could be loaded through bun:ffi (${failures.join("; ")})` };
}

/** True when the C library loads here (doctor reports it; callers still handle LibcError). */
export function libcAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

/** A NUL-terminated copy of a string for a `const char *` argument. */
function cString(value: string): Buffer {
  return Buffer.from(`${value}\0`, "utf8");
}

function fail(libc: LibcSymbols, call: string): never {
  const errno = read.i32(libc.__errno_location() as Pointer, 0);
  const name = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
  throw new LibcError(call, errno, `${String(libc.strerror(errno))} (${name})`);
}

/** mount(2) a fresh tmpfs on `target` with comma-separated `options` (e.g. "mode=0711,size=64m"). */
export function mountTmpfs(target: string, options: string, flags = MS_NOSUID | MS_NODEV | MS_NOEXEC): void {
  const libc = load();
  const rc = libc.mount(cString("tmpfs"), cString(target), cString("tmpfs"), flags, cString(options));
  if (rc !== 0) fail(libc, `mount(tmpfs, ${target})`);
}

/** Changes the options of the tmpfs mounted on `target` (e.g. "size=2m"); its files stay. */
export function remountTmpfs(target: string, options: string, flags = MS_NOSUID | MS_NODEV | MS_NOEXEC): void {
  const libc = load();
  const rc = libc.mount(cString("tmpfs"), cString(target), cString("tmpfs"), MS_REMOUNT | flags, cString(options));
  if (rc !== 0) fail(libc, `mount(remount tmpfs, ${target})`);
}

/** umount2(2); MNT_DETACH for a lazy unmount. */
export function unmount(target: string, flags = 0): void {
  const libc = load();
  if (libc.umount2(cString(target), flags) !== 0) fail(libc, `umount2(${target})`);
}

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const RLIMIT_CORE = 4;

export interface ProcessHardening {
  /** PR_SET_DUMPABLE is 0: no core dump, no ptrace attach by other users, /proc files root-only. */
  dumpable: boolean;
  /** RLIMIT_CORE is 0 (soft and hard): a crash writes no core file full of secrets to disk. */
  coreDumps: boolean;
}

/**
 * Refuses core dumps for this process (and what it starts): RLIMIT_CORE 0 and not dumpable.
 * Returns what holds afterwards; never throws (a process without libc keeps running, and says so).
 */
export function hardenProcess(): ProcessHardening {
  try {
    const libc = load();
    const zero = new BigUint64Array(2);
    const limited = libc.setrlimit(RLIMIT_CORE, zero) === 0;
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return { dumpable: libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) !== 0, coreDumps: !limited };
  } catch {
    return { dumpable: true, coreDumps: true };
  }
}

const RLIMIT_MEMLOCK = 8;
const SC_PAGESIZE = 30;
const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

export interface MemlockLimit {
  /** Bytes this process may lock (RLIMIT_MEMLOCK soft limit); undefined = unlimited. */
  soft?: bigint;
  hard?: bigint;
}

/** RLIMIT_MEMLOCK of this process, or undefined when it cannot be read. Never throws. */
export function memlockLimit(): MemlockLimit | undefined {
  try {
    const libc = load();
    const limit = new BigUint64Array(2);
    if (libc.getrlimit(RLIMIT_MEMLOCK, limit) !== 0) return undefined;
    const finite = (value: bigint) => (value === RLIM_INFINITY ? undefined : value);
    return { soft: finite(limit[0]!), hard: finite(limit[1]!) };
  } catch {
    return undefined;
  }
}

let pageSize: number | undefined;

/** The whole pages holding `bytes`: mlock(2) and munlock(2) act on pages, so say which ones. */
function pagesOf(libc: LibcSymbols, bytes: Uint8Array): { start: number; length: number } {
  pageSize ??= Number(libc.sysconf(SC_PAGESIZE)) || 4096;
  const address = ptr(bytes);
  const start = address - (address % pageSize);
  const end = Math.ceil((address + bytes.byteLength) / pageSize) * pageSize;
  return { start, length: end - start };
}

/**
 * mlock(2) the pages holding `bytes`, so the kernel never swaps them out. False when the
 * platform or RLIMIT_MEMLOCK refuses (the caller carries on unlocked); never throws. Locks do not
 * stack: a page shared with another locked buffer is unlocked by either's unlockMemory, so lock
 * buffers that own their pages, and unlock before dropping them (a freed locked page stays locked).
 */
export function lockMemory(bytes: Uint8Array): boolean {
  if (bytes.byteLength === 0) return true;
  try {
    const libc = load();
    const { start, length } = pagesOf(libc, bytes);
    return libc.mlock(start, length) === 0;
  } catch {
    return false;
  }
}

/** munlock(2) the pages holding `bytes`; false when refused. Never throws. */
export function unlockMemory(bytes: Uint8Array): boolean {
  if (bytes.byteLength === 0) return true;
  try {
    const libc = load();
    const { start, length } = pagesOf(libc, bytes);
    return libc.munlock(start, length) === 0;
  } catch {
    return false;
  }
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/** flock(2) LOCK_EX|LOCK_NB on an open fd: true when taken, false when another holds it. */
export function tryLockExclusive(fd: number): boolean {
  const libc = load();
  if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const errno = read.i32(libc.__errno_location() as Pointer, 0);
  // EWOULDBLOCK is EAGAIN on Linux.
  if (errno === ERRNO.EAGAIN) return false;
  fail(libc, "flock");
}

/** fcntl(2) commands and open(2) flags (the same on x64 and arm64). */
const F_GETFL = 3;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/**
 * A pipe whose read end is non-blocking (the write end, given to a child, is left blocking):
 * lets the agent read(2) a child's output straight into buffers it owns, with no runtime buffer
 * in between (src/rpc/owned-pipe.ts).
 */
export function openPipe(): { read: number; write: number } {
  const libc = load();
  const fds = new Int32Array(2);
  if (libc.pipe2(fds, O_CLOEXEC) !== 0) fail(libc, "pipe2");
  const flags = libc.fcntl(fds[0]!, F_GETFL, 0);
  if (flags < 0 || libc.fcntl(fds[0]!, F_SETFL, flags | O_NONBLOCK) !== 0) fail(libc, "fcntl");
  return { read: fds[0]!, write: fds[1]! };
}

/** getsockopt(2) level and option for a unix socket's peer (asm-generic/socket.h; x64 and arm64). */
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * The process on the other end of a connected unix socket, as the kernel recorded it at
 * connect(2) (SO_PEERCRED: struct ucred {pid, uid, gid}); the peer cannot forge it.
 */
export function peerCredentials(fd: number): PeerCredentials {
  const libc = load();
  const ucred = new Int32Array(3);
  const length = new Uint32Array([ucred.byteLength]);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ucred, length) !== 0) fail(libc, "getsockopt(SO_PEERCRED)");
  return { pid: ucred[0]!, uid: ucred[1]!, gid: ucred[2]! };
}

/**
 * Moves this process's stdout aside, the way go-plugin does: a new descriptor (close-on-exec,
 * blocking) on what fd 1 was, then fd 2 copied onto fd 1, so anything later written to fd 1 by
 * any means (console.*, Bun.write(Bun.stdout), writeSync(1)) lands on stderr. Returns the new
 * descriptor, the only way left to the original stdout.
 */
export function divertStdoutToStderr(): number {
  const libc = load();
  const channel = libc.fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (channel < 0) fail(libc, "fcntl(F_DUPFD_CLOEXEC)");
  // Writes of frames wait for the reader instead of failing with EAGAIN.
  const flags = libc.fcntl(channel, F_GETFL, 0);
  if (flags < 0 || libc.fcntl(channel, F_SETFL, flags & ~O_NONBLOCK) !== 0) fail(libc, "fcntl(F_SETFL)");
  if (libc.dup2(2, 1) !== 1) fail(libc, "dup2(2, 1)");
  return channel;
}

/** d_type values of a directory entry (dirent.h); UNKNOWN when the filesystem does not say. */
export const DIRENT_TYPE = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;
/** struct dirent on 64-bit glibc and musl: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name. */
const DIRENT_TYPE_OFFSET = 18;
const DIRENT_NAME_OFFSET = 19;

/**
 * Reads the directory at `path` one entry at a time (readdir(3): the kernel hands over a buffer of
 * entries per getdents64), calling `visit` with each name and d_type until it returns false or
 * the entries end. Unlike fs.opendir in Bun, which reads the whole directory before the first
 * entry, memory and time stay bounded by what `visit` accepts. "." and ".." are skipped.
 */
export function forEachDirEntry(path: string, visit: (name: string, type: number) => boolean): void {
  const libc = load();
  const dir = libc.opendir(cString(path));
  if (dir === null) fail(libc, `opendir(${path})`);
  try {
    for (;;) {
      const entry = libc.readdir(dir);
      if (entry === null) return;
      const name = new CString(entry, DIRENT_NAME_OFFSET).toString();
      if (name === "." || name === "..") continue;
      if (!visit(name, read.u8(entry, DIRENT_TYPE_OFFSET))) return;
    }
  } finally {
    libc.closedir(dir);
  }
}
