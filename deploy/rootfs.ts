#!/usr/bin/env bun
/**
 * Assembles the agent's root filesystem: the compiled binary, exactly the shared libraries `ldd`
 * lists for it, and the empty directories its mounts land on. Nothing else: no shell, no `mount`
 * (the agent mounts its tmpfs with mount(2)). The same tree is
 *   - the managed plugin's rootfs: `--plugin` writes DIR/rootfs/ and DIR/config.json
 *     (deploy/plugin/config.json), ready for `docker plugin create NAME DIR`;
 *   - what the tests `docker import` as the stand-in for deploy/Dockerfile's image, which names
 *     gcr.io/distroless/base-nossl-debian12 (no registry is reachable where the tests run).
 *
 *   bun deploy/rootfs.ts --out DIR [--binary dist/dso] [--plugin]
 */
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

const REPO_ROOT = resolve(import.meta.dir, "..");
export const DEFAULT_BINARY = join(REPO_ROOT, "dist/dso");
export const PLUGIN_CONFIG = join(REPO_ROOT, "deploy/plugin/config.json");
/** Where the binary sits in the image, the plugin and deploy/Dockerfile alike. */
export const BINARY_PATH_IN_ROOTFS = "usr/local/bin/dso";

/** Mount points the documented `docker run` and the plugin config bind onto. */
const DIRECTORIES: Array<[path: string, mode: number]> = [
  ["etc/dso/secrets", 0o700],
  ["run/docker/plugins", 0o755],
  ["run/dso/volumes", 0o700],
  ["tmp", 0o1777],
  ["proc", 0o555],
  ["sys", 0o555],
  ["dev", 0o755],
  ["var", 0o755],
];

/** The absolute paths of the libraries (and the loader) the dynamic linker maps for `binary`. */
export function sharedLibraries(binary: string): string[] {
  const ldd = Bun.spawnSync(["ldd", binary], { stdout: "pipe", stderr: "pipe" });
  const text = ldd.stdout.toString();
  if (!ldd.success) {
    // Bun's binaries are always dynamic: this is one for another architecture or C library,
    // whose libraries this host does not have.
    throw new Error(
      `ldd cannot list the libraries of ${binary} (${(text + ldd.stderr.toString()).trim()}): assemble its rootfs on a machine of its architecture and C library`,
    );
  }
  const paths: string[] = [];
  for (const line of text.split("\n")) {
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (match?.[1]) paths.push(match[1]);
    else if (/not found/.test(line)) throw new Error(`ldd ${binary}: ${line.trim()}`);
  }
  return paths;
}

/** Writes the rootfs under `dir` (created; must not hold anything else) and returns what it holds. */
export async function assembleRootfs(binary: string, dir: string): Promise<{ files: string[] }> {
  await mkdir(dir, { recursive: true });
  for (const [path, mode] of DIRECTORIES) {
    await mkdir(join(dir, path), { recursive: true });
    await chmod(join(dir, path), mode);
  }
  // Distroless keeps /var/run -> /run; the Docker socket's default path goes through it.
  await Bun.$`ln -sfn ../run ${join(dir, "var/run")}`.quiet();
  const files = [BINARY_PATH_IN_ROOTFS];
  await mkdir(join(dir, dirname(BINARY_PATH_IN_ROOTFS)), { recursive: true });
  await copyFile(binary, join(dir, BINARY_PATH_IN_ROOTFS));
  await chmod(join(dir, BINARY_PATH_IN_ROOTFS), 0o755);
  for (const library of sharedLibraries(binary)) {
    const inside = library.replace(/^\/+/, "");
    await mkdir(join(dir, dirname(inside)), { recursive: true });
    // copyFile follows links: the loader's /lib64 name gets the real file's bytes.
    await copyFile(library, join(dir, inside));
    files.push(inside);
  }
  return { files };
}

/** A plugin directory for `docker plugin create NAME DIR`: DIR/config.json and DIR/rootfs/. */
export async function assemblePluginDir(binary: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await assembleRootfs(binary, join(dir, "rootfs"));
  await writeFile(join(dir, "config.json"), await readFile(PLUGIN_CONFIG));
}

function flag(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
}

if (import.meta.main) {
  const out = flag("--out");
  if (!out) {
    console.error("usage: bun deploy/rootfs.ts --out DIR [--binary dist/dso] [--plugin]");
    process.exit(2);
  }
  const binary = resolve(flag("--binary") ?? DEFAULT_BINARY);
  if (process.argv.includes("--plugin")) {
    await assemblePluginDir(binary, out);
    console.log(`wrote ${out}/config.json and ${out}/rootfs; next: docker plugin create dso ${out} && docker plugin enable dso`);
  } else {
    await rm(out, { recursive: true, force: true });
    const { files } = await assembleRootfs(binary, out);
    console.log(`wrote ${out}: ${files.join(", ")}; next: tar -C ${out} -c . | docker import --change 'ENTRYPOINT ["/usr/local/bin/dso"]' --change 'CMD ["agent"]' - dso:local`);
  }
}
