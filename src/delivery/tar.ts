/**
 * The Tar Streamer's packer: an in-memory tar of a secret file set in the atomic layout, with each
 * file's mode/uid/gid. It is built in memory (never a temp file) and handed to putArchive or to
 * an exec's stdin.
 */
import { pack, type Header } from "tar-stream";
import { nameLinkTarget, VERSION_MARKER } from "./layout.ts";
import { VERSION_DIR_MODE, type SecretFile } from "./types.ts";

export interface TarEntry {
  header: Partial<Header> & Pick<Header, "name">;
  body?: Uint8Array;
}

/** A directory owned by root that the container's user can traverse. */
export function dirEntry(name: string, mtime: Date): TarEntry {
  return { header: { name: `${name}/`, type: "directory", mode: VERSION_DIR_MODE, uid: 0, gid: 0, mtime } };
}

export function symlinkEntry(name: string, target: string, mtime: Date): TarEntry {
  return { header: { name, type: "symlink", linkname: target, mode: 0o777, uid: 0, gid: 0, mtime } };
}

/** An empty regular file: in putArchive it replaces (RemoveAll) whatever was at that path. */
export function emptyFileEntry(name: string, mtime: Date): TarEntry {
  return { header: { name, type: "file", size: 0, mode: 0o400, uid: 0, gid: 0, mtime }, body: new Uint8Array() };
}

/** The version directory and its files: `<version>/`, `<version>/<name>` for each file, the marker. */
export function versionEntries(version: string, files: readonly SecretFile[], mtime: Date, marker?: string): TarEntry[] {
  return [
    dirEntry(version, mtime),
    ...files.map(
      (file): TarEntry => ({
        // uname/gname stay empty so tar -x inside the container uses the numeric ids, not its passwd.
        header: { name: `${version}/${file.name}`, type: "file", size: file.content.byteLength, mode: file.mode, uid: file.uid, gid: file.gid, mtime },
        body: file.content,
      }),
    ),
    ...(marker ? [symlinkEntry(`${version}/${VERSION_MARKER}`, marker, mtime)] : []),
  ];
}

/** `<name> -> ..data/<name>` for each file. */
export function nameLinkEntries(files: readonly SecretFile[], mtime: Date): TarEntry[] {
  return files.map((file) => symlinkEntry(file.name, nameLinkTarget(file.name), mtime));
}

/** Packs entries, in order, into one tar held in memory. */
export async function packTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  archive.on("data", (chunk: unknown) => {
    chunks.push(chunk as Buffer);
  });
  const finished = new Promise<void>((resolve, reject) => {
    archive.on("end", resolve);
    archive.on("error", reject);
  });
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null) => (error ? reject(error) : resolve());
      if (entry.body) archive.entry(entry.header, Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength), done);
      else archive.entry(entry.header, done);
    });
  }
  archive.finalize();
  await finished;
  return Buffer.concat(chunks);
}
