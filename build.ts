#!/usr/bin/env bun
/**
 * Builds the single `dso` executable.
 *   bun run build          → dist/dso for this machine
 *   bun run build --all    → also dist/dso-linux-{x64,arm64}[-musl], dist/install.sh and
 *                            dist/SHA256SUMS: a copy of dist/ is a complete release
 *   bun run build --plugin → also dist/plugin/{config.json,rootfs/}: the Docker managed plugin
 *                            for this machine (`docker plugin create dso dist/plugin`)
 * The compiled binary never reads ./bunfig.toml or ./.env from the directory it starts in:
 * either would let whoever controls that directory run code inside the agent.
 */
import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { assemblePluginDir } from "./deploy/rootfs.ts";
import pkg from "./package.json" with { type: "json" };

const DIST = join(import.meta.dir, "dist");
const ENTRY = join(import.meta.dir, "src/main.ts");
/** Shipped next to the binaries: the release's `curl | sh` entry point. */
const INSTALL_SCRIPT = join(import.meta.dir, "install.sh");

interface Target {
  /** File name in dist/ and in release downloads (install.sh builds the same name). */
  name: string;
  bunTarget: Bun.Build.CompileTarget;
}

const RELEASE_TARGETS: Target[] = [
  { name: "dso-linux-x64", bunTarget: "bun-linux-x64" },
  { name: "dso-linux-x64-musl", bunTarget: "bun-linux-x64-musl" },
  { name: "dso-linux-arm64", bunTarget: "bun-linux-arm64" },
  { name: "dso-linux-arm64-musl", bunTarget: "bun-linux-arm64-musl" },
];

function gitCommit(): string {
  const result = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: import.meta.dir, stderr: "ignore" });
  const commit = result.success ? result.stdout.toString().trim() : "";
  if (!commit) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: import.meta.dir });
  return dirty.stdout.toString().trim() ? `${commit}-dirty` : commit;
}

async function compile(outfile: string, bunTarget: Bun.Build.CompileTarget | undefined, commit: string) {
  const target = bunTarget?.replace(/^bun-/, "") ?? `${process.platform}-${process.arch}`;
  const result = await Bun.build({
    entrypoints: [ENTRY],
    compile: {
      ...(bunTarget ? { target: bunTarget } : {}),
      outfile,
      autoloadBunfig: false,
      autoloadDotenv: false,
      autoloadTsconfig: false,
      autoloadPackageJson: false,
    },
    minify: true,
    bytecode: false,
    format: "esm",
    splitting: true,
    sourcemap: "none",
    define: {
      DSO_BUILD_VERSION: JSON.stringify(pkg.version),
      DSO_BUILD_COMMIT: JSON.stringify(commit),
      DSO_BUILD_TARGET: JSON.stringify(target),
    },
  });
  if (!result.success) {
    for (const message of result.logs) console.error(message);
    throw new Error(`build failed for ${target}`);
  }
}

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

async function main() {
  const all = process.argv.includes("--all");
  const commit = gitCommit();
  await mkdir(DIST, { recursive: true });
  const host = join(DIST, "dso");
  await compile(host, undefined, commit);
  console.log(`built ${host} (${pkg.version}, ${commit})`);
  if (process.argv.includes("--plugin")) {
    await assemblePluginDir(host, join(DIST, "plugin"));
    console.log(`wrote ${join(DIST, "plugin")} (docker plugin create dso ${join(DIST, "plugin")})`);
  }
  if (!all) return;

  const sums: string[] = [];
  for (const target of RELEASE_TARGETS) {
    const outfile = join(DIST, target.name);
    await rm(outfile, { force: true });
    await compile(outfile, target.bunTarget, commit);
    sums.push(`${await sha256(outfile)}  ${basename(outfile)}`);
    console.log(`built ${outfile}`);
  }
  const installer = join(DIST, basename(INSTALL_SCRIPT));
  await copyFile(INSTALL_SCRIPT, installer);
  await chmod(installer, 0o755);
  sums.push(`${await sha256(installer)}  ${basename(installer)}`);
  console.log(`copied ${installer}`);
  await writeFile(join(DIST, "SHA256SUMS"), `${sums.join("\n")}\n`);
  console.log(`wrote ${join(DIST, "SHA256SUMS")}`);
}

await main();
