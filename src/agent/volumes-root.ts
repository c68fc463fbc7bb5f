/**
 * Plugin mode needs its volume root on tmpfs. When it is not one and the agent runs as root, the
 * agent mounts a small tmpfs there (nothing has been written yet, so nothing reaches the disk).
 */
import { mkdir } from "node:fs/promises";
import { DsoError } from "../errors.ts";
import { isRamBacked, nearestExisting } from "../delivery/tmpfs.ts";

export const VOLUMES_TMPFS_OPTIONS = "mode=0711,size=64m";

export async function ensureTmpfsRoot(root: string): Promise<"already" | "mounted"> {
  const existing = await nearestExisting(root);
  if (existing === root && (await isRamBacked(root))) return "already";
  if (process.getuid?.() !== 0) {
    throw new DsoError("DELIVERY_REFUSED", `volume root ${root} is not a tmpfs and only root can mount one`, {
      hint: `mount -t tmpfs -o ${VOLUMES_TMPFS_OPTIONS} tmpfs ${root}`,
    });
  }
  await mkdir(root, { recursive: true, mode: 0o711 });
  const mounted = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", VOLUMES_TMPFS_OPTIONS, "tmpfs", root], { stderr: "pipe" });
  if (!mounted.success || !(await isRamBacked(root))) {
    throw new DsoError("DELIVERY_REFUSED", `could not mount a tmpfs on ${root}: ${mounted.stderr.toString().trim().split("\n")[0]}`);
  }
  return "mounted";
}
