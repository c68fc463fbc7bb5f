/**
 * The lease keeper's records, kept so an agent restart finds them (and renews, never issues
 * again) while a reboot forgets them with the leases' consumers: a JSON file, 0600 root, in a
 * RAM-backed directory the agent owns (the DSO volume root, beside the host key). Metadata only:
 * lease ids, serials, consumers, times; never a value. Where the directory is not RAM-backed or
 * not private the records stay in memory only (an agent restart then issues again and the old
 * leases expire at their TTL).
 */
import { constants } from "node:fs";
import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isRamBacked, privateDirProblem } from "../delivery/tmpfs.ts";
import type { LeaseRecord } from "./lease-record.ts";

export const LEASE_BOOK_FILE = ".leases.json";
const FORMAT = 1;

export interface LeaseBook {
  /** Where the records are kept, or undefined for memory only. */
  readonly path?: string;
  load(): Promise<LeaseRecord[]>;
  save(records: readonly LeaseRecord[]): Promise<void>;
}

export const memoryLeaseBook = (): LeaseBook => ({ load: async () => [], save: async () => {} });

/** The book in `dir` when it is RAM-backed and private, else memory only. */
export async function openLeaseBook(dir: string): Promise<LeaseBook> {
  if (!(await isRamBacked(dir).catch(() => false))) return memoryLeaseBook();
  if ((await privateDirProblem(dir).catch(() => "unreadable")) !== undefined) return memoryLeaseBook();
  return fileLeaseBook(join(dir, LEASE_BOOK_FILE));
}

export function fileLeaseBook(path: string): LeaseBook {
  let writing = Promise.resolve();
  return {
    path,
    async load() {
      const text = await readFile(path, "utf8").catch(() => undefined);
      if (!text) return [];
      try {
        const parsed = JSON.parse(text) as { format?: number; leases?: LeaseRecord[] };
        return parsed.format === FORMAT && Array.isArray(parsed.leases) ? parsed.leases.filter(isRecord) : [];
      } catch {
        return [];
      }
    },
    save(records) {
      // One write at a time, each a whole new file renamed over the old one.
      writing = writing.then(() => writeAtomically(path, JSON.stringify({ format: FORMAT, leases: records }))).catch(() => {});
      return writing;
    },
  };
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`;
  await rm(temp, { force: true });
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

function isRecord(x: unknown): x is LeaseRecord {
  const r = x as Partial<LeaseRecord>;
  return typeof r?.secret === "string" && typeof r.consumer === "string" && typeof r.expiresAtMs === "number" && typeof r.durationMs === "number" && (r.state === "active" || r.state === "retiring");
}
