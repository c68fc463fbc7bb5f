/**
 * exec mode, for `--tmpfs` targets in images that have tar and a POSIX shell: one `docker exec`
 * of a fixed script, the tar on its stdin. File names reach the script as positional arguments
 * only, never spliced into the script text.
 *
 * The tar carries only the new version directory; the script then switches `..data` with
 * `mv -T` (rename(2)), so the switch is as atomic as in plugin and procfs modes. The script needs sh,
 * mv, ln, readlink and rm besides tar (any image with a tar has them). It refuses a target whose
 * physical path differs from the literal one: a symlink there could lead off the tmpfs to disk.
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { commandMissing, firstLine, runInContainer } from "../container-exec.ts";
import { assertValidFileSet } from "../file-names.ts";
import { DATA_LINK, isMarker, newVersionName, VERSION_MARKER } from "../layout.ts";
import { packTar, versionEntries } from "../tar.ts";
import type { DeliveryMode, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

/**
 * tar run directly, not through sh: busybox's sh finds its own applets even when they are not on
 * PATH, so `sh -c "command -v tar"` would say yes in an image that deliberately ships no tar.
 * Exit codes 126/127 mean "not there"; `--help` exits 0 or 1 depending on the tar.
 */
export const EXEC_PROBE_CMD = ["tar", "--help"];

/**
 * $1 target dir, $2 new version dir, $3... file names. Extract, switch ..data, make missing name
 * links (each replaced by rename, never removed first), then drop old versions and stale links.
 */
const EXIT_TARGET_ELSEWHERE = 3;

export const SWITCH_SCRIPT = `set -eu
cd -P -- "$1"
if [ "$(pwd -P)" != "$1" ]; then
  echo "the target path leads elsewhere through a symbolic link; refusing to write off the tmpfs" >&2
  exit ${EXIT_TARGET_ELSEWHERE}
fi
version=$2
shift 2
tar -x --numeric-owner -f -
rm -f -- ..data_tmp
ln -s -- "$version" ..data_tmp
mv -Tf -- ..data_tmp ..data
for name do
  if [ "$(readlink -- "$name" 2>/dev/null || true)" != "..data/$name" ]; then
    rm -f -- ..dso_link_tmp
    ln -s -- "..data/$name" ..dso_link_tmp
    mv -Tf -- ..dso_link_tmp "$name"
  fi
done
for entry in ..dso_*; do
  if [ "$entry" != "$version" ]; then rm -rf -- "$entry"; fi
done
for entry in * .[!.]*; do
  if [ ! -L "$entry" ] || [ "$(readlink -- "$entry")" != "..data/$entry" ]; then continue; fi
  keep=0
  for name do
    if [ "$name" = "$entry" ]; then keep=1; fi
  done
  if [ "$keep" = 0 ]; then rm -f -- "$entry"; fi
done
`;

const MODE: DeliveryMode = "exec";

export const execMode: DeliveryModeImpl = {
  async deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal, marker?: string): Promise<DeliveryResult> {
    const started = performance.now();
    const names = assertValidFileSet(files);
    const version = newVersionName();
    const tar = await packTar(versionEntries(version, files, new Date(), marker));
    let outcome: Awaited<ReturnType<typeof runInContainer>>;
    try {
      outcome = await runInContainer(docker, plan.containerId, {
        cmd: ["sh", "-c", SWITCH_SCRIPT, "dso-deliver", plan.targetPath, version, ...names],
        stdin: tar,
        signal,
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
    return { mode: MODE, targetPath: plan.targetPath, files: names, bytes, durationMs: performance.now() - started };
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
