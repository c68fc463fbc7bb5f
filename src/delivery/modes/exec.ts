/**
 * exec mode, for `--tmpfs` targets in images that have tar and a POSIX shell: one `docker exec`
 * of a fixed script, the tar on its stdin. File names reach the script as positional arguments
 * only, never spliced into the script text.
 *
 * The tar carries the new version directory and the links to switch to; the script switches
 * `..data` with `mv -T` (rename(2)), so the switch is as atomic as in plugin and procfs modes, and
 * moves all name links with one `mv`. The script needs sh, mv, readlink and rm besides tar (any
 * image with a tar has them). It refuses a target whose
 * physical path differs from the literal one: a symlink there could lead off the tmpfs to disk.
 * For a `signal` rollback the switch can keep the previous version, and two more fixed scripts
 * switch back to it or prune it (RESTORE_SCRIPT, PRUNE_SCRIPT).
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { commandMissing, firstLine, runInContainer } from "../container-exec.ts";
import { assertValidFileSet } from "../file-names.ts";
import { DATA_LINK, isMarker, isVersionName, nameLinkTarget, newVersionName, VERSION_MARKER, VERSION_PREFIX } from "../layout.ts";
import { dirEntry, packTar, symlinkEntry, type TarEntry, versionEntries } from "../tar.ts";
import type { DeliverModeOptions, DeliveryMode, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

/**
 * tar run directly, not through sh: busybox's sh finds its own applets even when they are not on
 * PATH, so `sh -c "command -v tar"` would say yes in an image that deliberately ships no tar.
 * Exit codes 126/127 mean "not there"; `--help` exits 0 or 1 depending on the tar.
 */
export const EXEC_PROBE_CMD = ["tar", "--help"];

/**
 * $1 target dir, $2 new version dir, $3 staging dir, $4 `keep` or `-`, $5... file names. With
 * `keep`, the version `..data` pointed to before (a real directory, not a link) is not removed and
 * its name is printed (`kept <version>`), to switch back to with RESTORE_SCRIPT. The tar holds the version
 * directory and, in the staging directory, `..data -> <version>` and `<name> -> ..data/<name>` for
 * every name. After one extraction, one `mv -T` switches `..data` (rename(2)) and one `mv` moves
 * every name link into place, each a rename(2) over whatever link was there: a reader of
 * `<dir>/<name>` never finds it missing, and the number of processes does not grow with the
 * number of names. Then one `rm` drops old versions and the (now empty) staging directory, and
 * links left dangling by the switch (names no longer in the set) are removed.
 */
const EXIT_TARGET_ELSEWHERE = 3;
const EXIT_NOT_RESTORABLE = 4;

/** Enters the target $1, refused when a symbolic link leads elsewhere (shell fragment). */
const ENTER_TARGET = `cd -P -- "$1"
if [ "$(pwd -P)" != "$1" ]; then
  echo "the target path leads elsewhere through a symbolic link; refusing to write off the tmpfs" >&2
  exit ${EXIT_TARGET_ELSEWHERE}
fi
`;

/** Removes every `..dso_*` entry but $version (shell fragment). */
const DROP_OTHER_VERSIONS = `set --
for entry in ..dso_*; do
  if [ "$entry" != "$version" ]; then set -- "$@" "$entry"; fi
done
if [ "$#" -gt 0 ]; then rm -rf -- "$@"; fi
`;

/** Removes name links `<name> -> ..data/<name>` whose file the current version does not have (shell fragment). */
const DROP_DANGLING_LINKS = `set --
for entry in * .[!.]*; do
  if [ -L "$entry" ] && [ ! -e "$entry" ] && [ "$(readlink -- "$entry")" = "..data/$entry" ]; then set -- "$@" "$entry"; fi
done
if [ "$#" -gt 0 ]; then rm -f -- "$@"; fi
`;

export const SWITCH_SCRIPT = `set -eu
${ENTER_TARGET}version=$2
stage=$3
keep=
if [ "$4" = keep ]; then
  previous=$(readlink ..data 2>/dev/null || true)
  case "$previous" in
    */*|..dso_stage_*) ;;
    ..dso_?*) if [ -d "$previous" ] && [ ! -L "$previous" ]; then keep=$previous; fi ;;
  esac
fi
shift 4
tar -x --numeric-owner -f -
mv -Tf -- "$stage/..data" ..data
count=$#
for name do set -- "$@" "$stage/$name"; done
shift "$count"
if [ "$#" -gt 0 ]; then mv -f -- "$@" .; fi
set --
for entry in ..dso_*; do
  if [ "$entry" != "$version" ] && [ "$entry" != "$keep" ]; then set -- "$@" "$entry"; fi
done
if [ "$#" -gt 0 ]; then rm -rf -- "$@"; fi
${DROP_DANGLING_LINKS}if [ -n "$keep" ]; then echo "kept $keep"; fi
`;

/**
 * $1 target dir, $2 the kept version. Switches `..data` back to it (refused when it is not a real
 * directory: never through a link), links names only it has, removes every other version (the
 * failed one) and name links left dangling.
 */
export const RESTORE_SCRIPT = `set -eu
${ENTER_TARGET}version=$2
if [ ! -d "$version" ] || [ -L "$version" ]; then
  echo "the kept previous version is gone or is no longer a directory; it cannot be restored" >&2
  exit ${EXIT_NOT_RESTORABLE}
fi
rm -f -- "..data_tmp_restore"
ln -s -- "$version" "..data_tmp_restore"
mv -Tf -- "..data_tmp_restore" ..data
for entry in "$version"/* "$version"/.[!.]*; do
  name=\${entry#"$version"/}
  if [ -f "$entry" ] && [ ! -L "$entry" ] && [ ! -L "$name" ] && [ ! -e "$name" ]; then ln -s -- "..data/$name" "$name"; fi
done
${DROP_OTHER_VERSIONS}${DROP_DANGLING_LINKS}`;

/** $1 target dir. Removes every version but the one `..data` points to. */
export const PRUNE_SCRIPT = `set -eu
cd -P -- "$1"
if [ "$(pwd -P)" != "$1" ]; then exit ${EXIT_TARGET_ELSEWHERE}; fi
version=$(readlink ..data 2>/dev/null || true)
case "$version" in ..dso_?*) ;; *) exit 0 ;; esac
${DROP_OTHER_VERSIONS}`;

const MODE: DeliveryMode = "exec";

/** The kept version the switch script printed (`kept <version>`), or why none was kept. */
function keptFrom(opts: DeliverModeOptions | undefined, stdout: string | undefined): { kept?: string; notKept?: string } {
  if (!opts?.keepPrevious) return {};
  const kept = /^kept (\S+)$/m.exec(stdout ?? "")?.[1];
  return kept && isVersionName(kept) && !kept.includes("/") ? { kept } : { notKept: "the target held no earlier version" };
}

/** A "..dso_" name, so the script's (and the atomic writer's) cleanup of old versions removes it too. */
function stageName(version: string): string {
  return `${VERSION_PREFIX}stage_${version.slice(VERSION_PREFIX.length)}`;
}

/** `<stage>/..data -> <version>` and `<stage>/<name> -> ..data/<name>`: the links the script moves into place. */
function stageEntries(stage: string, version: string, names: readonly string[], mtime: Date): TarEntry[] {
  return [
    dirEntry(stage, mtime),
    symlinkEntry(`${stage}/${DATA_LINK}`, version, mtime),
    ...names.map((name) => symlinkEntry(`${stage}/${name}`, nameLinkTarget(name), mtime)),
  ];
}

export const execMode: DeliveryModeImpl = {
  async deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string, opts?: DeliverModeOptions): Promise<DeliveryResult> {
    const started = performance.now();
    const names = assertValidFileSet(files);
    const version = newVersionName();
    const stage = stageName(version);
    const mtime = new Date();
    const tar = await packTar([...versionEntries(version, files, mtime, marker), ...stageEntries(stage, version, names, mtime)]);
    let outcome: Awaited<ReturnType<typeof runInContainer>>;
    try {
      outcome = await runInContainer(docker, plan.containerId, {
        cmd: ["sh", "-c", SWITCH_SCRIPT, "dso-deliver", plan.targetPath, version, stage, opts?.keepPrevious ? "keep" : "-", ...names],
        stdin: tar,
        signal,
        captureStdout: opts?.keepPrevious === true,
      });
    } finally {
      tar.fill(0);
    }
    if (outcome.exitCode !== 0) {
      if (outcome.exitCode === EXIT_TARGET_ELSEWHERE) {
        throw new DsoError("DELIVERY_REFUSED", `${plan.targetPath} in the container is reached through a symbolic link; deliver to the tmpfs mount point itself`);
      }
      const why = commandMissing(outcome.exitCode) ? "the image has no sh or tar" : firstLine(outcome.stderr) || `exit code ${outcome.exitCode}`;
      throw new DsoError("DELIVERY_FAILED", `exec delivery into ${plan.targetPath} failed: ${why}`);
    }
    const bytes = files.reduce((sum, file) => sum + file.content.byteLength, 0);
    return { mode: MODE, targetPath: plan.targetPath, files: names, bytes, durationMs: performance.now() - started, ...keptFrom(opts, outcome.stdout) };
  },
  async restore(docker: Dockerode, plan: DeliveryPlan, version: string, signal?: AbortSignal): Promise<void> {
    if (!isVersionName(version) || version.includes("/")) throw new DsoError("INTERNAL", "invalid version name");
    const outcome = await runInContainer(docker, plan.containerId, { cmd: ["sh", "-c", RESTORE_SCRIPT, "dso-restore", plan.targetPath, version], signal });
    if (outcome.exitCode !== 0) throw new DsoError("DELIVERY_FAILED", `exec restore in ${plan.targetPath} failed: ${firstLine(outcome.stderr) || `exit code ${outcome.exitCode}`}`);
  },
  async prune(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<void> {
    const outcome = await runInContainer(docker, plan.containerId, { cmd: ["sh", "-c", PRUNE_SCRIPT, "dso-prune", plan.targetPath], signal });
    if (outcome.exitCode !== 0) throw new DsoError("DELIVERY_FAILED", `exec prune in ${plan.targetPath} failed: ${firstLine(outcome.stderr) || `exit code ${outcome.exitCode}`}`);
  },
  /** One exec of readlink (argv only): create, start and inspect, three Docker API calls. */
  async readMarker(docker: Dockerode, plan: DeliveryPlan, signal?: AbortSignal): Promise<string | undefined> {
    const outcome = await runInContainer(docker, plan.containerId, {
      cmd: ["readlink", "--", `${plan.targetPath}/${DATA_LINK}/${VERSION_MARKER}`],
      signal,
      captureStdout: true,
    });
    const marker = outcome.stdout?.trim();
    return outcome.exitCode === 0 && isMarker(marker) ? marker : undefined;
  },
};
