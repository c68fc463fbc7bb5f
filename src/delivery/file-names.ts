import { DsoError } from "../errors.ts";
import { fileNameProblem, isFileMode, isOwnerId, targetPathProblem } from "../util/file-rules.ts";
import { printable } from "../util/printable.ts";

export { MAX_NAME_BYTES } from "../util/file-rules.ts";
import type { SecretFile } from "./types.ts";

/** A quoted, escaped, shortened form of a name that is safe on one log line (util/printable.ts). */
export const printableName = (name: string): string => printable(name);

/** Why `name` cannot be a delivered file name (the one rule, util/file-rules.ts). */
export const nameProblem = fileNameProblem;

export function assertValidName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new DsoError("DELIVERY_REFUSED", `secret file name ${printableName(name)} ${problem}`);
}

/** Checks every name and that none repeats; returns the names in order. */
export function assertValidFileSet(files: readonly SecretFile[]): string[] {
  const seen = new Set<string>();
  for (const file of files) {
    assertValidName(file.name);
    if (seen.has(file.name)) throw new DsoError("DELIVERY_REFUSED", `secret file name ${printableName(file.name)} appears twice`);
    seen.add(file.name);
    assertValidOwnership(file);
  }
  return [...seen];
}

function assertValidOwnership(file: SecretFile): void {
  const bad = (what: string) => new DsoError("DELIVERY_REFUSED", `secret file ${printableName(file.name)} has an invalid ${what}`);
  if (!isOwnerId(file.uid)) throw bad("uid");
  if (!isOwnerId(file.gid)) throw bad("gid");
  if (!isFileMode(file.mode)) throw bad("mode (0000–0777; no setuid, setgid or sticky bits)");
}

/** A normalised absolute container path, or a refusal (util/file-rules.ts targetPathProblem). */
export function normaliseTargetPath(path: string): string {
  const problem = targetPathProblem(path);
  if (problem) throw new DsoError("DELIVERY_REFUSED", `target path ${printableName(path)} ${problem}`);
  return `/${path
    .split("/")
    .filter((part) => part !== "" && part !== ".")
    .join("/")}`;
}
