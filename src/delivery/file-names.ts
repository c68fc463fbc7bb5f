import { DsoError } from "../errors.ts";
import type { SecretFile } from "./types.ts";

/** Linux NAME_MAX: longer names fail at open() anyway; refuse them before touching anything. */
export const MAX_NAME_BYTES = 255;
/** Printed names are cut here so a hostile name cannot flood a log line. */
const MAX_PRINTED_CHARS = 64;

/** A quoted, escaped, shortened form of a name that is safe on one log line. */
export function printableName(name: string): string {
  const shortened = name.length > MAX_PRINTED_CHARS ? `${name.slice(0, MAX_PRINTED_CHARS)}…` : name;
  return JSON.stringify(shortened);
}

/** Why `name` cannot be a delivered file name, or undefined when it can. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name === "." || name === "..") return "is a directory reference";
  // "..data", "..data_tmp" and the version directories belong to the atomic writer.
  if (name.startsWith("..")) return 'starts with "..", which is reserved for DSO\'s version directories';
  if (name.includes("/")) return 'contains "/"; file names cannot have directories';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  if (/[\u0000-\u001f\u007f]/.test(name)) return "contains a NUL or control character";
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

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

const MAX_ID = 0xffff_fffe;

function assertValidOwnership(file: SecretFile): void {
  const bad = (what: string) => new DsoError("DELIVERY_REFUSED", `secret file ${printableName(file.name)} has an invalid ${what}`);
  if (!Number.isInteger(file.uid) || file.uid < 0 || file.uid > MAX_ID) throw bad("uid");
  if (!Number.isInteger(file.gid) || file.gid < 0 || file.gid > MAX_ID) throw bad("gid");
  if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o7777) throw bad("mode");
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
