/**
 * A rolling replacement interrupted by an agent crash leaves a container named
 * `<name>-dso-next-<t>` (replacement started, old one still there or already removed) or
 * `<name>-dso-old-<t>` (in-place re-creation: the old container parked under another name). At
 * start the agent settles each case so exactly one container serves under `<name>`: the old one
 * when it still runs, else the replacement (or the parked original) takes the name back.
 */
import type Dockerode from "dockerode";
import type { FieldLogger } from "../../log/logger.ts";
import { NEXT_SUFFIX, OLD_SUFFIX } from "./rolling.ts";

const LEFTOVER = new RegExp(`^/?(.+)(${NEXT_SUFFIX}|${OLD_SUFFIX})[0-9a-z]+$`);

export interface RecoveryReport {
  removed: string[];
  renamed: string[];
}

export async function recoverInterruptedReplacements(docker: Dockerode, log: Pick<FieldLogger, "warn">): Promise<RecoveryReport> {
  const report: RecoveryReport = { removed: [], renamed: [] };
  const all = await docker.listContainers({ all: true });
  const byName = new Map(all.map((c) => [(c.Names?.[0] ?? "").replace(/^\//, ""), c]));
  for (const leftover of all) {
    const name = (leftover.Names?.[0] ?? "").replace(/^\//, "");
    const match = LEFTOVER.exec(name);
    if (!match) continue;
    const base = match[1]!;
    const kind = match[2] === NEXT_SUFFIX ? "replacement" : "parked original";
    const owner = byName.get(base);
    const container = docker.getContainer(leftover.Id);
    try {
      if (owner?.State === "running") {
        await container.remove({ force: true });
        report.removed.push(name);
        log.warn(`removed the ${kind} ${name} left by an interrupted rotation; ${base} keeps running`);
        continue;
      }
      if (owner) await docker.getContainer(owner.Id).remove({ force: true });
      await container.rename({ name: base });
      if (leftover.State !== "running") await container.start();
      report.renamed.push(base);
      log.warn(`the ${kind} ${name} left by an interrupted rotation now runs as ${base}`);
    } catch (error) {
      log.warn(`could not settle ${name} left by an interrupted rotation: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  return report;
}
