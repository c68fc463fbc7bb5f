/**
 * `dso doctor`: the file provider's directory is the one place secrets sit on the host's disk, by
 * the operator's choice; it must not be readable by other users. Warns about a directory that
 * others can enter or list and about files others can read (docs/providers/file.md).
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { DsoConfig } from "../config/types.ts";
import { BUILTIN_FILE_PROVIDER_PATH } from "../config/index.ts";
import type { CheckResult } from "./types.ts";

/** Enough for any real secrets directory; a bigger tree is reported as partly checked. */
const MAX_ENTRIES_CHECKED = 10_000;
const MAX_NAMES_SHOWN = 5;
const OTHERS_READ = 0o004;
const OTHERS_DIR_ACCESS = 0o005;

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;

export async function checkFileProviderPermissions(config: DsoConfig | undefined): Promise<CheckResult[]> {
  const providers = Object.values(config?.providers ?? {}).filter((p) => p.type === "file");
  return Promise.all(providers.map((p) => checkPath(p.name, typeof p.config.path === "string" ? p.config.path : BUILTIN_FILE_PROVIDER_PATH)));
}

async function checkPath(provider: string, path: string): Promise<CheckResult> {
  const check = `file provider ${provider}`;
  const stats = await lstat(path).catch(() => undefined);
  if (!stats) return { check, status: "warn", detail: `${path} does not exist: create it with install -d -m 0700 ${path}` };
  const exposed: string[] = [];
  let checked = 0;
  const visit = async (entry: string, mode: number, isDir: boolean): Promise<void> => {
    if (++checked > MAX_ENTRIES_CHECKED) return;
    if (mode & (isDir ? OTHERS_DIR_ACCESS : OTHERS_READ)) exposed.push(`${entry} (${octal(mode)})`);
    if (!isDir) return;
    for (const child of await readdir(entry, { withFileTypes: true }).catch(() => [])) {
      if (!child.isDirectory() && !child.isFile()) continue;
      const childPath = join(entry, child.name);
      const childStats = await lstat(childPath).catch(() => undefined);
      if (childStats) await visit(childPath, childStats.mode, child.isDirectory());
    }
  };
  await visit(path, stats.mode, stats.isDirectory());
  const partly = checked > MAX_ENTRIES_CHECKED ? ` (first ${MAX_ENTRIES_CHECKED} entries checked)` : "";
  if (exposed.length === 0) return { check, status: "ok", detail: `${path}: not readable by other users${partly}` };
  const shown = exposed.slice(0, MAX_NAMES_SHOWN).join(", ") + (exposed.length > MAX_NAMES_SHOWN ? `, and ${exposed.length - MAX_NAMES_SHOWN} more` : "");
  const fix = stats.isDirectory() ? `chmod 0700 ${path} && chmod 0600 ${path}/*` : `chmod 0600 ${path}`;
  return { check, status: "warn", detail: `readable by other users: ${shown}; secrets there are on disk, keep them private: ${fix}${partly}` };
}
