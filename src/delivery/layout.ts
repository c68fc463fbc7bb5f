/**
 * The atomic layout (Kubernetes atomic-writer style), shared by every mode:
 *
 *   <target>/..dso_<version>/<name>   the files of one version
 *   <target>/..data -> ..dso_<version> switched with one rename(2)
 *   <target>/<name> -> ..data/<name>  stable user-visible names
 *
 * A reader that resolves `..data` once (cd into it, or open the files under it) sees one whole
 * version; a reader of `<target>/<name>` always sees a complete file of some version.
 */
export const DATA_LINK = "..data";
export const DATA_LINK_TMP = "..data_tmp";
export const VERSION_PREFIX = "..dso_";

let counter = 0;

/** A fresh version directory name: time plus a per-process counter, so two writes never collide. */
export function newVersionName(now = Date.now()): string {
  counter = (counter + 1) % 1_000_000;
  return `${VERSION_PREFIX}${now.toString(36)}_${process.pid.toString(36)}_${counter.toString(36)}`;
}

export function isVersionName(entry: string): boolean {
  return entry.startsWith(VERSION_PREFIX);
}

/** The target of a user-visible name's symlink. */
export function nameLinkTarget(name: string): string {
  return `${DATA_LINK}/${name}`;
}
