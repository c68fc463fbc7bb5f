/**
 * exec mode, for `--tmpfs` targets in images that have tar and a POSIX shell: one `docker exec`
 * of a fixed script, the tar on its stdin. File names reach the script as positional arguments
 * only, never spliced into the script text.
 *
 * The tar carries only the new version directory; the script then switches `..data` with
 * `mv -T` (rename(2)), so the switch is as atomic as in plugin and procfs modes.
 */
import type Dockerode from "dockerode";
import { DsoError } from "../../errors.ts";
import { commandMissing, firstLine, runInContainer } from "../container-exec.ts";
import { assertValidFileSet } from "../file-names.ts";
import { newVersionName } from "../layout.ts";
import { packTar, versionEntries } from "../tar.ts";
import type { DeliveryMode, DeliveryModeImpl, DeliveryPlan, DeliveryResult, SecretFile } from "../types.ts";

/** Exits 0 when every tool the switch script needs is on PATH. */
export const EXEC_PROBE_CMD = ["sh", "-c", "command -v tar && command -v mv && command -v ln && command -v readlink && command -v rm"];

/**
 * $1 target dir, $2 new version dir, $3... file names. Extract, switch ..data, make missing name
 * links (each replaced by rename, never removed first), then drop old versions and stale links.
 */
export const SWITCH_SCRIPT = `set -eu
cd -- "$1"
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
  async deliver(docker: Dockerode, plan: DeliveryPlan, files: readonly SecretFile[], signal?: AbortSignal): Promise<DeliveryResult> {
    const started = performance.now();
    const names = assertValidFileSet(files);
    const version = newVersionName();
    const tar = await packTar(versionEntries(version, files, new Date()));
    const outcome = await runInContainer(docker, plan.containerId, {
      cmd: ["sh", "-c", SWITCH_SCRIPT, "dso-deliver", plan.targetPath, version, ...names],
      stdin: tar,
      signal,
    });
    tar.fill(0);
    if (outcome.exitCode !== 0) {
      const why = commandMissing(outcome.exitCode) ? "the image has no sh or tar" : firstLine(outcome.stderr) || `exit code ${outcome.exitCode}`;
      throw new DsoError("DELIVERY_FAILED", `exec delivery into ${plan.targetPath} failed: ${why}`);
    }
    const bytes = files.reduce((sum, file) => sum + file.content.byteLength, 0);
    return { mode: MODE, targetPath: plan.targetPath, files: names, bytes, durationMs: performance.now() - started };
  },
};
