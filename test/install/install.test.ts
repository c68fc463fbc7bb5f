// install.sh against a release served from a local directory: download, checksum
// verification, atomic install, up-to-date skip, failures, and temp-dir cleanup, under
// sh, dash and busybox sh.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DSO_BINARY, REPO_ROOT } from "../support/dso-binary.ts";

const INSTALL_SCRIPT = join(REPO_ROOT, "install.sh");
const INSTALL_TIMEOUT_MS = 30_000;
const FAKE_VERSION = "0.0.0-installtest";
/** Applets a busybox-only host provides; install.sh must need nothing else. */
const BUSYBOX_APPLETS = ["sh", "wget", "sha256sum", "awk", "mktemp", "uname", "tr", "cp", "chmod", "mv", "rm", "mkdir", "cat", "ln", "readlink"];

const hostArch = process.arch === "arm64" ? "arm64" : "x64";
const hostLibc = Bun.spawnSync(["sh", "-c", "ldd --version 2>&1"]).stdout.toString().toLowerCase().includes("musl") ? "musl" : "glibc";
const hostAsset = `dso-linux-${hostArch}${hostLibc === "musl" ? "-musl" : ""}`;

let root: string;
let releases: string;
let server: ReturnType<typeof Bun.serve>;
let requested: string[] = [];
let binaryBytes: Buffer;
let expectedVersionLine: string;

// Per-test directories, fresh for every test.
let installDir: string;
let scratchTmp: string;
let home: string;

function sha256(bytes: Uint8Array | string): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** Writes one release under releases/<name>: files plus a SHA256SUMS (lines may be overridden). */
function writeRelease(name: string, files: Record<string, Uint8Array | string>, sums?: string): void {
  const dir = join(releases, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, bytes] of Object.entries(files)) {
    writeFileSync(join(dir, file), bytes);
    chmodSync(join(dir, file), 0o755);
  }
  const lines = sums ?? Object.entries(files).map(([file, bytes]) => `${sha256(bytes)}  ${file}\n`).join("");
  writeFileSync(join(dir, "SHA256SUMS"), lines);
}

interface InstallRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function runInstaller(
  release: string,
  env: Record<string, string> = {},
  shell: string[] = ["sh"],
  path = process.env.PATH ?? "/usr/bin:/bin",
  args: string[] = [],
): Promise<InstallRun> {
  const proc = Bun.spawn([...shell, INSTALL_SCRIPT, ...args], {
    env: {
      PATH: path,
      HOME: home,
      TMPDIR: scratchTmp,
      DSO_DOWNLOAD_URL: `http://127.0.0.1:${server.port}/${release}`,
      DSO_INSTALL_DIR: installDir,
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: INSTALL_TIMEOUT_MS,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  // Every run, whatever its outcome, must leave its temp dir behind it removed.
  expect(readdirSync(scratchTmp)).toEqual([]);
  return { code, stdout, stderr };
}

function expectInstalled(run: InstallRun, bytes: Uint8Array): void {
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  const installed = join(installDir, "dso");
  expect(readFileSync(installed).equals(Buffer.from(bytes))).toBe(true);
  expect(statSync(installed).mode & 0o777).toBe(0o755);
  expect(readdirSync(installDir)).toEqual(["dso"]);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "dso-install-test-"));
  releases = join(root, "releases");
  // A real executable: the lead's compiled build when present, else a script that prints a version.
  binaryBytes = existsSync(DSO_BINARY)
    ? readFileSync(DSO_BINARY)
    : Buffer.from(`#!/bin/sh\necho "dso ${FAKE_VERSION} (fake binary for install tests)"\n`);
  const probe = join(root, "probe-dso");
  writeFileSync(probe, binaryBytes);
  chmodSync(probe, 0o755);
  expectedVersionLine = Bun.spawnSync([probe, "version"]).stdout.toString().trim();
  expect(expectedVersionLine).toMatch(/^dso \S+/);

  writeRelease("good", { [hostAsset]: binaryBytes });
  writeRelease("badsum", { [hostAsset]: binaryBytes }, `${sha256("something else")}  ${hostAsset}\n`);
  writeRelease("nosum", { [hostAsset]: binaryBytes }, `${sha256(binaryBytes)}  dso-linux-other\n`);
  writeRelease("missing", {}, `${sha256(binaryBytes)}  ${hostAsset}\n`);
  writeRelease("libc", {
    [`dso-linux-${hostArch}`]: "#!/bin/sh\necho dso 1.0.0-glibc\n",
    [`dso-linux-${hostArch}-musl`]: "#!/bin/sh\necho dso 1.0.0-musl\n",
  });
  writeRelease("arches", {
    "dso-linux-x64": "#!/bin/sh\necho dso 1.0.0-x64\n",
    "dso-linux-arm64": "#!/bin/sh\necho dso 1.0.0-arm64\n",
  });

  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      requested.push(path);
      const file = join(releases, path);
      if (path.includes("..") || !existsSync(file) || statSync(file).isDirectory()) {
        return new Response("not found", { status: 404 });
      }
      return new Response(Bun.file(file));
    },
  });
});

afterAll(() => {
  server?.stop(true);
  rmSync(root, { recursive: true, force: true });
});

beforeEach(() => {
  const testDir = mkdtempSync(join(root, "run-"));
  installDir = join(testDir, "bin");
  scratchTmp = join(testDir, "tmp");
  home = join(testDir, "home");
  mkdirSync(scratchTmp);
  mkdirSync(home);
  requested = [];
});

describe("install.sh", () => {
  test.each([[["sh"]], [["dash"]], [["busybox", "sh"]]])(
    "under %p downloads, verifies and installs the host binary and prints its version",
    async (shell) => {
      const run = await runInstaller("good", {}, shell);
      expectInstalled(run, binaryBytes);
      expect(run.stdout).toContain("checksum verified");
      expect(run.stdout).toContain(expectedVersionLine);
      expect(run.stdout).toContain("not on your PATH");
      expect(requested).toEqual(["/good/SHA256SUMS", `/good/${hostAsset}`]);
    },
  );

  test("installs on a busybox-only toolset (wget and busybox sha256sum, no curl)", async () => {
    const tools = join(root, `busybox-tools-${Date.now()}`);
    mkdirSync(tools);
    for (const applet of BUSYBOX_APPLETS) symlinkSync("/bin/busybox", join(tools, applet));
    const run = await runInstaller("good", { DSO_LIBC: hostLibc }, [join(tools, "sh")], tools);
    expectInstalled(run, binaryBytes);
    expect(run.stdout).toContain(expectedVersionLine);
  });

  test("a second run with the same release says up to date and leaves the binary untouched", async () => {
    expectInstalled(await runInstaller("good"), binaryBytes);
    const installed = join(installDir, "dso");
    const past = new Date("2020-01-01T00:00:00Z");
    utimesSync(installed, past, past);
    requested = [];

    const again = await runInstaller("good");
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("dso is up to date");
    expect(again.stdout).toContain(expectedVersionLine);
    expect(statSync(installed).mtime.getTime()).toBe(past.getTime());
    expect(requested).toEqual(["/good/SHA256SUMS"]);
  });

  test("replaces an installed binary that differs from the release", async () => {
    mkdirSync(installDir);
    writeFileSync(join(installDir, "dso"), "#!/bin/sh\necho dso old\n", { mode: 0o755 });
    const run = await runInstaller("good");
    expectInstalled(run, binaryBytes);
    expect(run.stdout).not.toContain("up to date");
  });

  test("refuses a binary whose checksum does not match SHA256SUMS and installs nothing", async () => {
    const run = await runInstaller("badsum");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("checksum mismatch");
    expect(existsSync(installDir) ? readdirSync(installDir) : []).toEqual([]);
  });

  test("keeps the existing binary when the new download fails verification", async () => {
    mkdirSync(installDir);
    const old = "#!/bin/sh\necho dso old\n";
    writeFileSync(join(installDir, "dso"), old, { mode: 0o755 });
    const run = await runInstaller("badsum");
    expect(run.code).not.toBe(0);
    expect(readFileSync(join(installDir, "dso"), "utf8")).toBe(old);
    expect(readdirSync(installDir)).toEqual(["dso"]);
  });

  test("refuses when SHA256SUMS has no line for the binary", async () => {
    const run = await runInstaller("nosum");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`no checksum for ${hostAsset}`);
    expect(requested).toEqual(["/nosum/SHA256SUMS"]);
    expect(existsSync(installDir) ? readdirSync(installDir) : []).toEqual([]);
  });

  test("fails when the binary is missing from the release (HTTP 404)", async () => {
    const run = await runInstaller("missing");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`download failed: http://127.0.0.1:${server.port}/missing/${hostAsset}`);
    expect(existsSync(installDir) ? readdirSync(installDir) : []).toEqual([]);
  });

  test("fails when the release has no SHA256SUMS (HTTP 404)", async () => {
    const run = await runInstaller("no-such-release");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("download failed");
    expect(existsSync(installDir) ? readdirSync(installDir) : []).toEqual([]);
  });

  test("rejects an unknown architecture before downloading anything", async () => {
    const run = await runInstaller("good", { DSO_ARCH: "sparc" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("unsupported architecture 'sparc'");
    expect(requested).toEqual([]);
  });

  test("rejects an operating system other than Linux", async () => {
    const run = await runInstaller("good", { DSO_OS: "Darwin" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("unsupported operating system 'darwin'");
    expect(requested).toEqual([]);
  });

  test("maps uname arch names: amd64 and aarch64 pick the x64 and arm64 builds", async () => {
    // Both assets are scripts here, so either runs on any host; only the chosen name matters.
    const arm = await runInstaller("arches", { DSO_ARCH: "aarch64", DSO_LIBC: "glibc" });
    expect(arm.code).toBe(0);
    expect(arm.stdout).toContain("dso 1.0.0-arm64");
    expect(requested).toEqual(["/arches/SHA256SUMS", "/arches/dso-linux-arm64"]);
    requested = [];
    const amd = await runInstaller("arches", { DSO_ARCH: "amd64", DSO_LIBC: "glibc" });
    expect(amd.code).toBe(0);
    expect(amd.stdout).toContain("dso 1.0.0-x64");
    expect(requested).toEqual(["/arches/SHA256SUMS", "/arches/dso-linux-x64"]);
  });

  test.each([["musl"], ["glibc"]])("installs the %s build when DSO_LIBC says so", async (libc) => {
    const run = await runInstaller("libc", { DSO_LIBC: libc });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`dso 1.0.0-${libc}`);
    const suffix = libc === "musl" ? "-musl" : "";
    expect(readFileSync(join(installDir, "dso"), "utf8")).toBe(`#!/bin/sh\necho dso 1.0.0-${libc}\n`);
    expect(requested).toEqual(["/libc/SHA256SUMS", `/libc/dso-linux-${hostArch}${suffix}`]);
  });

  test("refuses a DSO_VERSION that is not a release tag before downloading anything", async () => {
    const run = await runInstaller("good", { DSO_DOWNLOAD_URL: "", DSO_VERSION: "v1/../../evil" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("DSO_VERSION 'v1/../../evil' is not a release tag");
    expect(existsSync(installDir) ? readdirSync(installDir) : []).toEqual([]);
  });

  test("DSO_DOWNLOAD_URL takes precedence over DSO_VERSION", async () => {
    const run = await runInstaller("good", { DSO_VERSION: "v9.9.9" });
    expectInstalled(run, binaryBytes);
    expect(requested).toEqual(["/good/SHA256SUMS", `/good/${hostAsset}`]);
  });

  test("refuses an unknown DSO_LIBC value", async () => {
    const run = await runInstaller("good", { DSO_LIBC: "uclibc" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("DSO_LIBC must be 'glibc' or 'musl'");
  });

  test.each([["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const)(
    "removes its temp dir when interrupted by %s mid-download",
    async (signal, expectedCode) => {
      // A server that accepts and never answers keeps the installer inside its download.
      let connected = false;
      const stalled = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open() { connected = true; }, data() {} } });
      try {
        // setsid: the installer leads its own process group, so the signal reaches it and
        // curl together, as a Ctrl-C in a terminal would.
        const proc = Bun.spawn(["setsid", "sh", INSTALL_SCRIPT], {
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            HOME: home,
            TMPDIR: scratchTmp,
            DSO_DOWNLOAD_URL: `http://127.0.0.1:${stalled.port}`,
            DSO_INSTALL_DIR: installDir,
          },
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
          timeout: INSTALL_TIMEOUT_MS,
        });
        const deadline = Date.now() + INSTALL_TIMEOUT_MS;
        // Signalled once the download is under way (not while mktemp still runs): "mid-download".
        while (!connected && Date.now() < deadline) await Bun.sleep(20);
        expect(readdirSync(scratchTmp)).toHaveLength(1);
        process.kill(-proc.pid, signal);
        expect(await proc.exited).toBe(expectedCode);
        expect(readdirSync(scratchTmp)).toEqual([]);
        expect(existsSync(join(installDir, "dso"))).toBe(false);
      } finally {
        stalled.stop(true);
      }
    },
  );

  test("accepts SHA256SUMS written in binary mode ('<hex> *<name>')", async () => {
    writeRelease("binary-mode", { [hostAsset]: binaryBytes }, `${sha256(binaryBytes)} *${hostAsset}\n`);
    const run = await runInstaller("binary-mode");
    expectInstalled(run, binaryBytes);
  });
});

/** The docker CLI (Debian's docker.io ships it); it finds plugins under $HOME/.docker/cli-plugins. */
async function dockerCli(args: string[]): Promise<InstallRun> {
  const proc = Bun.spawn(["docker", ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: INSTALL_TIMEOUT_MS,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("install.sh: docker CLI plugin and --uninstall", () => {
  const pluginLink = () => join(home, ".docker", "cli-plugins", "docker-dso");

  test("installs dso, links docker-dso so `docker dso version` runs it, and --uninstall removes both", async () => {
    const run = await runInstaller("good");
    expectInstalled(run, binaryBytes);
    expect(run.stdout).toContain(`linked ${pluginLink()}`);
    expect(readlinkSync(pluginLink())).toBe(join(installDir, "dso"));

    const version = Bun.spawnSync([join(installDir, "dso"), "version"]);
    expect(version.stdout.toString().trim()).toBe(expectedVersionLine);
    // Only the compiled binary speaks the CLI plugin handshake; the fake script cannot.
    if (existsSync(DSO_BINARY)) {
      const metadata = JSON.parse(Bun.spawnSync([join(installDir, "dso"), "docker-cli-plugin-metadata"]).stdout.toString());
      expect(metadata).toMatchObject({ SchemaVersion: "0.1.0", Vendor: expect.any(String), Version: expect.any(String) });
      const viaDocker = await dockerCli(["dso", "version"]);
      expect(viaDocker.stderr).toBe("");
      expect(viaDocker.stdout.trim()).toBe(expectedVersionLine);
      expect((await dockerCli(["--help"])).stdout).toMatch(/dso\*?\s+Docker Secret Operator/);
    }

    requested = [];
    const removed = await runInstaller("good", {}, ["sh"], undefined, ["--uninstall"]);
    expect(removed.stderr).toBe("");
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain(`removed ${join(installDir, "dso")}`);
    expect(removed.stdout).toContain(`removed ${pluginLink()}`);
    expect(readdirSync(installDir)).toEqual([]);
    expect(existsSync(pluginLink())).toBe(false);
    // Issue 22: the cli-plugins directory the install created is not left behind empty.
    expect(existsSync(join(home, ".docker", "cli-plugins"))).toBe(false);
    expect(requested).toEqual([]);
    expect((await dockerCli(["dso", "version"])).code).not.toBe(0);

    const again = await runInstaller("good", {}, ["sh"], undefined, ["--uninstall"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("nothing to remove");
  });

  test("--uninstall leaves a docker-dso link that points elsewhere and refuses a file that is not dso", async () => {
    mkdirSync(installDir, { recursive: true });
    mkdirSync(join(home, ".docker", "cli-plugins"), { recursive: true });
    symlinkSync("/usr/bin/other-tool", pluginLink());
    writeFileSync(join(installDir, "dso"), "#!/bin/sh\necho something else\n", { mode: 0o755 });
    const run = await runInstaller("good", {}, ["sh"], undefined, ["--uninstall"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("does not look like dso");
    expect(lstatSync(pluginLink()).isSymbolicLink()).toBe(true);
    expect(existsSync(join(installDir, "dso"))).toBe(true);
  });

  test("DSO_CLI_PLUGIN_DIR=none installs no link; an unknown argument is refused", async () => {
    const run = await runInstaller("good", { DSO_CLI_PLUGIN_DIR: "none" });
    expectInstalled(run, binaryBytes);
    expect(existsSync(join(home, ".docker"))).toBe(false);
    const bad = await runInstaller("good", {}, ["sh"], undefined, ["--frobnicate"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("unknown argument '--frobnicate'");
  });
});
