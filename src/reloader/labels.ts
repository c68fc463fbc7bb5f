/**
 * A container's own labels: only the labels given at `docker run`/create time are the container's
 * wish; the ones its image baked in (which may come from anyone) grant nothing. Docker reports a
 * container's labels merged with its image's, so the image's are subtracted. The image labels are
 * cached per image id (an image never changes), so a reconcile pass over containers of known
 * images asks Docker nothing more than its container list. An image that cannot be inspected
 * (removed with `rmi -f`) is never cached: its containers' labels are unknown, and unknown labels
 * grant nothing (desired.ts).
 */
import type Dockerode from "dockerode";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";

/**
 * A container's labels without the ones its image set: a key the image set to the same value is
 * the image's (Docker's merged view cannot tell a run-time label of equal key and value apart, so
 * such a label grants nothing either: docs/configuration.md). `dropped` lists the dso.* keys
 * removed, which are worth a warning.
 */
export function ownLabels(container: Record<string, string>, image: Record<string, string>): { labels: Record<string, string>; dropped: string[] } {
  const labels: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [key, value] of Object.entries(container)) {
    if (image[key] !== value) labels[key] = value;
    else if (key.startsWith("dso.")) dropped.push(key);
  }
  return { labels, dropped };
}

/** What a container's labels are known to be: its own, or unknown (with the merged view and why). */
export type ContainerLabels = { known: true; labels: Record<string, string> } | { known: false; merged: Record<string, string>; problem: string };

export class ImageLabels {
  private readonly byImage = new Map<string, Record<string, string>>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly docker: Dockerode,
    private readonly log: Pick<FieldLogger, "warn">,
  ) {}

  /** The image's labels; throws when the image cannot be inspected (nothing is cached then). */
  private async of(imageId: string): Promise<Record<string, string>> {
    const cached = this.byImage.get(imageId);
    if (cached) return cached;
    const info = (await this.docker.getImage(imageId).inspect()) as { Config?: { Labels?: Record<string, string> | null } };
    const labels = info.Config?.Labels ?? {};
    this.byImage.set(imageId, labels);
    return labels;
  }

  /** The container's own labels; warns once per container about dso.* labels from its image. */
  async own(containerId: string, name: string, imageId: string, labels: Record<string, string> | null | undefined): Promise<ContainerLabels> {
    const all = labels ?? {};
    if (Object.keys(all).length === 0) return { known: true, labels: all };
    let image: Record<string, string>;
    try {
      image = await this.of(imageId);
    } catch (error) {
      const problem = `its image ${imageId.replace(/^sha256:/, "").slice(0, 12)} cannot be inspected (${describeError(error)}), so the labels given at docker run cannot be told from the image's`;
      return { known: false, merged: all, problem };
    }
    const own = ownLabels(all, image);
    if (own.dropped.length && !this.warned.has(containerId)) {
      this.warned.add(containerId);
      this.log.warn(`container ${name}: ignoring ${own.dropped.join(", ")} set by its image; name the container in secrets[].targets of dso.yaml to give it secrets`);
    }
    return { known: true, labels: own.labels };
  }

  forget(containerId: string): void {
    this.warned.delete(containerId);
  }
}
