/**
 * A container's own labels: the ones its image baked in are not the container's wish. The image
 * labels are cached per image id (an image never changes), so a reconcile pass over containers of
 * known images asks Docker nothing more than its container list.
 */
import type Dockerode from "dockerode";
import type { FieldLogger } from "../log/logger.ts";

/**
 * A container's labels, without the `dso.*` labels its image baked in: an image (which may
 * come from anyone) must not be able to ask for secrets; the person who runs it opts in.
 */
export function ownLabels(container: Record<string, string>, image: Record<string, string>): { labels: Record<string, string>; dropped: string[] } {
  const labels: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [key, value] of Object.entries(container)) {
    if (key.startsWith("dso.") && image[key] === value) dropped.push(key);
    else labels[key] = value;
  }
  return { labels, dropped };
}

export class ImageLabels {
  private readonly byImage = new Map<string, Record<string, string>>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly docker: Dockerode,
    private readonly log: Pick<FieldLogger, "warn">,
  ) {}

  private async of(imageId: string): Promise<Record<string, string>> {
    let labels = this.byImage.get(imageId);
    if (!labels) {
      const info = (await this.docker.getImage(imageId).inspect().catch(() => undefined)) as { Config?: { Labels?: Record<string, string> | null } } | undefined;
      labels = info?.Config?.Labels ?? {};
      this.byImage.set(imageId, labels);
    }
    return labels;
  }

  /** The container's own labels; warns once per container about dso.* labels from its image. */
  async own(containerId: string, name: string, imageId: string, labels: Record<string, string> | null | undefined): Promise<Record<string, string>> {
    const all = labels ?? {};
    if (!Object.keys(all).some((k) => k.startsWith("dso."))) return all;
    const own = ownLabels(all, await this.of(imageId));
    if (own.dropped.length && !this.warned.has(containerId)) {
      this.warned.add(containerId);
      this.log.warn(`container ${name}: ignoring ${own.dropped.join(", ")} set by its image; name the container in secrets[].targets of dso.yaml to give it secrets`);
    }
    return own.labels;
  }

  forget(containerId: string): void {
    this.warned.delete(containerId);
  }
}
