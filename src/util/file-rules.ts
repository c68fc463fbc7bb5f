/**
 * The rules for what DSO writes, stated once and used by dso.yaml, container labels, DSO volume
 * options and the delivery engine alike: file modes, owner ids, file names.
 *
 * Modes are 0000–0777: setuid, setgid and sticky bits are refused everywhere. A secret file is
 * data; a set-id bit on it would only matter if something executed it, and then it would be a way
 * to change identity inside the container, which is never what a secret is for.
 */
export const MAX_ID = 4_294_967_294;
export const MAX_FILE_MODE = 0o777;
/** Linux NAME_MAX: longer names fail at open() anyway; refuse them before touching anything. */
export const MAX_NAME_BYTES = 255;
export const FILE_MODE_RULE = 'an octal file mode from "0000" to "0777", such as "0400"';

const OCTAL_MODE = /^(?:0o|0)?([0-7]{1,4})$/;

/** "0400", "400", "0o400" (or a whole number as YAML wrote it) → the mode; undefined when not 0000–0777. */
export function parseFileMode(raw: string | number): number | undefined {
  if (typeof raw === "number" && !Number.isInteger(raw)) return undefined;
  const octal = OCTAL_MODE.exec(String(raw).trim());
  if (!octal) return undefined;
  const mode = Number.parseInt(octal[1]!, 8);
  return mode <= MAX_FILE_MODE ? mode : undefined;
}

export function isFileMode(mode: number): boolean {
  return Number.isInteger(mode) && mode >= 0 && mode <= MAX_FILE_MODE;
}

/** A uid or gid written as digits → the id; undefined when not 0–MAX_ID. */
export function parseOwnerId(raw: string): number | undefined {
  if (!/^\d{1,10}$/.test(raw)) return undefined;
  const id = Number(raw);
  return id <= MAX_ID ? id : undefined;
}

export function isOwnerId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= MAX_ID;
}

/** Why `name` cannot be a delivered file name, or undefined when it can. */
export function fileNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  // A lone surrogate is written to disk as U+FFFD: two different names would be one file.
  if (!name.isWellFormed()) return "must be valid Unicode (it holds a lone surrogate)";
  if (name === "." || name === "..") return 'must not be "." or ".." (a directory reference)';
  if (name.includes("/")) return 'is a file name and must not contain "/"';
  // "..data", "..data_tmp" and the version directories belong to the atomic writer.
  if (name.startsWith("..")) return 'must not start with "..", which is reserved for DSO\'s version directories';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  if (/[\u0000-\u001f\u007f]/.test(name)) return "must not contain control characters";
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `must be at most ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/**
 * Why `path` cannot be the directory secrets are delivered to inside a container, or undefined
 * when it can: dso.yaml's inject paths, the dso.inject.path label and the delivery engine all ask
 * this, so what one accepts the others never refuse.
 */
export function targetPathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "must be an absolute path";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  if (/[\u0000-\u001f\u007f]/.test(path)) return "must not contain control characters";
  if (!path.isWellFormed()) return "must be valid Unicode (it holds a lone surrogate)";
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) return 'must not contain ".."';
  if (parts.length === 0) return "must not be the container's root directory";
  return undefined;
}
