/**
 * The atomic layout (Kubernetes atomic-writer style), shared by every mode:
 *
 *   <target>/..dso_<version>/<name>   the files of one version
 *   <target>/..dso_<version>/..dso_version -> <marker>   which secret versions these are
 *   <target>/..data -> ..dso_<version> switched with one rename(2)
 *   <target>/<name> -> ..data/<name>  stable user-visible names
 *
 * A reader that resolves `..data` once (cd into it, or open the files under it) sees one whole
 * version; a reader of `<target>/<name>` always sees a complete file of some version.
 *
 * Normally one version directory exists. A `signal` rotation keeps the previous one beside the new
 * one for its health window (switched back to, or removed after it); which one is current is
 * always what `..data` says, read from the container.
 */
export const DATA_LINK = "..data";
export const DATA_LINK_TMP = "..data_tmp";
export const VERSION_PREFIX = "..dso_";
/**
 * A symlink inside each version directory whose target is the caller's version marker (opaque
 * here; see secrets/version-marker.ts). Read back with one readlink, it tells which versions a
 * container actually holds, after any restart of the agent.
 */
export const VERSION_MARKER = "..dso_version";
/** What a marker may contain: one path component of printable ASCII, short enough for a link. */
const MARKER_TEXT = /^[A-Za-z0-9:=,*._-]{1,4000}$/;

export function isMarker(text: string | undefined): text is string {
  return text !== undefined && MARKER_TEXT.test(text);
}

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
