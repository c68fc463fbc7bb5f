import { DsoError } from "../errors.ts";
import { fileNameProblem, isFileMode, isOwnerId } from "../util/file-rules.ts";

export { MAX_NAME_BYTES } from "../util/file-rules.ts";
import type { SecretFile } from "./types.ts";

/** Printed names are cut here so a hostile name cannot flood a log line. */
const MAX_PRINTED_CHARS = 64;

/** A quoted, escaped, shortened form of a name that is safe on one log line. */
export function printableName(name: string): string {
  const shortened = name.length > MAX_PRINTED_CHARS ? `${name.slice(0, MAX_PRINTED_CHARS)}…` : name;
  return JSON.stringify(shortened);
}

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

/** A normalised absolute container path, or a refusal: no "..", no relative paths, no control characters. */
export function normaliseTargetPath(path: string): string {
  const refuse = (problem: string) => new DsoError("DELIVERY_REFUSED", `target path ${printableName(path)} ${problem}`);
  if (!path.startsWith("/")) throw refuse("is not absolute");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  if (/[\u0000-\u001f\u007f]/.test(path)) throw refuse("contains a control character");
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw refuse('contains ".."');
  if (parts.length === 0) throw refuse("is the container's root directory");
  return `/${parts.join("/")}`;
}
