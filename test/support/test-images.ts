/**
 * Test images, built locally from Debian's busybox-static by `docker import` (no registry here):
 * - BUSYBOX_IMAGE: /bin/busybox with a symlink for every applet (sh, tar, sleep, cat, ...).
 * - NOTAR_IMAGE: busybox hidden at /.bb/busybox with only sh, cat, sleep and ls linked into /bin,
 *   so no `tar` on PATH: the "image without tar" case for exec and procfs delivery.
 * Both default to `sleep 3600` so a started container stays up until the test removes it.
 */
import type Dockerode from "dockerode";
import { readFileSync } from "node:fs";
import { pack as tarPack, type Header } from "tar-stream";

export const BUSYBOX_IMAGE = "dso-test/busybox:1";
export const NOTAR_IMAGE = "dso-test/notar:1";

const BUSYBOX_BINARY = "/bin/busybox";
const NOTAR_APPLETS = ["sh", "cat", "sleep", "ls"];
const IMAGE_CHANGES = ['CMD ["sleep","3600"]'];

interface RootfsEntry {
  header: Partial<Header> & Pick<Header, "name">;
  body?: Buffer;
}

const building = new WeakMap<Dockerode, Promise<void>>();

/** Makes sure both test images exist on this daemon; builds only what is missing. */
export function ensureTestImages(docker: Dockerode): Promise<void> {
  let pending = building.get(docker);
  if (!pending) {
    pending = buildMissingImages(docker);
    building.set(docker, pending);
    pending.catch(() => building.delete(docker));
  }
  return pending;
}

async function buildMissingImages(docker: Dockerode): Promise<void> {
  const busybox = readFileSync(BUSYBOX_BINARY);
  await ensureImage(docker, BUSYBOX_IMAGE, () => busyboxRootfs(busybox));
  await ensureImage(docker, NOTAR_IMAGE, () => notarRootfs(busybox));
}

async function ensureImage(docker: Dockerode, reference: string, rootfs: () => RootfsEntry[]): Promise<void> {
  if (await imageExists(docker, reference)) return;
  const [repo, tag] = reference.split(":") as [string, string];
  const tarball = await packRootfs(rootfs());
  // POST /images/create?fromSrc=- : `docker import`; `changes` sets the config an import lacks.
  const progress = await docker.importImage(tarball as unknown as NodeJS.ReadableStream, { repo, tag, changes: IMAGE_CHANGES });
  const events = await new Promise<Array<{ error?: string }>>((resolve, reject) =>
    docker.modem.followProgress(progress, (err: Error | null, out: Array<{ error?: string }>) => (err ? reject(err) : resolve(out))),
  );
  const failure = events.find((event) => event.error);
  if (failure) throw new Error(`importing ${reference} failed: ${failure.error}`);
  if (!(await imageExists(docker, reference))) throw new Error(`importing ${reference} produced no image`);
}

async function imageExists(docker: Dockerode, reference: string): Promise<boolean> {
  try {
    await docker.getImage(reference).inspect();
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw error;
  }
}

function busyboxApplets(): string[] {
  const listed = Bun.spawnSync([BUSYBOX_BINARY, "--list"], { stdout: "pipe", stderr: "ignore" });
  if (!listed.success) throw new Error(`${BUSYBOX_BINARY} --list failed`);
  return listed.stdout
    .toString()
    .split("\n")
    .map((name) => name.trim())
    .filter((name) => name && name !== "busybox" && !name.includes("/"));
}

function directory(name: string, mode = 0o755): RootfsEntry {
  return { header: { name, type: "directory", mode, uid: 0, gid: 0 } };
}

function file(name: string, body: Buffer, mode = 0o644): RootfsEntry {
  return { header: { name, type: "file", mode, uid: 0, gid: 0, size: body.length }, body };
}

function symlink(name: string, target: string): RootfsEntry {
  return { header: { name, type: "symlink", linkname: target, mode: 0o777, uid: 0, gid: 0 } };
}

/** Directories and accounts most tests expect: a non-root user (nobody) for uid/gid checks. */
function baseRootfs(): RootfsEntry[] {
  return [
    directory("bin"),
    directory("etc"),
    directory("root", 0o700),
    directory("run"),
    directory("tmp", 0o1777),
    directory("proc"),
    directory("sys"),
    directory("dev"),
    file("etc/passwd", Buffer.from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
    file("etc/group", Buffer.from("root:x:0:\nnogroup:x:65534:\n")),
  ];
}

function busyboxRootfs(busybox: Buffer): RootfsEntry[] {
  return [
    ...baseRootfs(),
    file("bin/busybox", busybox, 0o755),
    ...busyboxApplets().map((applet) => symlink(`bin/${applet}`, "busybox")),
  ];
}

function notarRootfs(busybox: Buffer): RootfsEntry[] {
  return [
    ...baseRootfs(),
    directory(".bb"),
    file(".bb/busybox", busybox, 0o755),
    ...NOTAR_APPLETS.map((applet) => symlink(`bin/${applet}`, "/.bb/busybox")),
  ];
}

/** Builds the rootfs tar in memory; a Buffer lets the import send a Content-Length. */
async function packRootfs(entries: RootfsEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => {
    chunks.push(chunk as Buffer);
  });
  const finished = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) =>
      entry.body
        ? pack.entry(entry.header, entry.body, (err?: Error | null) => (err ? reject(err) : resolve()))
        : pack.entry(entry.header, (err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }
  pack.finalize();
  await finished;
  return Buffer.concat(chunks);
}
