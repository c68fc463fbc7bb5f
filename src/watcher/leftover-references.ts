/**
 * A container running with a literal `dso://` or `dsofile://` in its environment was brought up
 * without `dso up` (plain `docker compose up`): the application got the
 * reference instead of the secret. The agent looks at each running container once (one inspect
 * per container life; the list is one call per pass) and reports each such container: variable
 * names and the references' secret names only (a reference is a name, not a value).
 *
 * Only containers docker compose created (label com.docker.compose.project) are looked at: that
 * is where the Go DSO's references live, and reading the environment of every container on the
 * host would bring other applications' variables (a database password given with `docker run -e`)
 * into the agent's memory. The inspect is read as bytes (env-reference-scan.ts) and zeroed: even
 * a compose container's other variables never become strings.
 */
import type Dockerode from "dockerode";
import { describeError } from "../errors.ts";
import type { FieldLogger } from "../log/logger.ts";
import { readEnvReferences } from "./env-reference-scan.ts";

const REFERENCE = /^(dso|dsofile):\/\//;
/** Set by docker compose (v1 and v2) on every container it creates. */
export const COMPOSE_PROJECT_LABEL = "com.docker.compose.project";
/** A pass inspects at most this many new containers; the rest wait for the next pass. */
const MAX_INSPECTS_PER_PASS = 200;

export interface LeftoverReference {
  id: string;
  name: string;
  /** `VAR=dso://secret` entries as written (references only, never other variables). */
  variables: string[];
}

/** The `VAR=dso://…` entries of a container's environment. */
export function literalReferences(env: readonly string[] | null | undefined): string[] {
  return (env ?? []).filter((entry) => {
    const eq = entry.indexOf("=");
    return eq > 0 && REFERENCE.test(entry.slice(eq + 1));
  });
}

export class LeftoverReferenceWatch {
  /** Running containers looked at: id → their references (empty when clean). */
  private readonly seen = new Map<string, LeftoverReference | undefined>();

  constructor(
    private readonly deps: {
      docker: Pick<Dockerode, "listContainers" | "modem">;
      /** A container's reference entries (undefined: not inspectable); tests replace it. */
      references?: (id: string) => Promise<string[] | undefined>;
      log: FieldLogger;
      /** A container newly found with references. */
      onFound: (found: LeftoverReference) => void;
      /** The number of running containers with references, after each pass. */
      onCount: (count: number) => void;
    },
  ) {}

  /** The running containers with references, as of the last pass. */
  list(): LeftoverReference[] {
    return [...this.seen.values()].filter((f): f is LeftoverReference => f !== undefined);
  }

  async pass(): Promise<void> {
    let running: Dockerode.ContainerInfo[];
    try {
      running = await this.deps.docker.listContainers({ filters: { status: ["running"], label: [COMPOSE_PROJECT_LABEL] } });
    } catch (error) {
      this.deps.log.debug("could not list containers for leftover references", { error: describeError(error) });
      return;
    }
    const ids = new Set(running.map((c) => c.Id));
    for (const id of [...this.seen.keys()]) if (!ids.has(id)) this.seen.delete(id);
    const fresh = running.filter((c) => !this.seen.has(c.Id)).slice(0, MAX_INSPECTS_PER_PASS);
    for (const c of fresh) {
      const read = this.deps.references ?? ((id: string) => readEnvReferences(this.deps.docker, id));
      const entries = await read(c.Id).catch(() => undefined);
      if (!entries) {
        // Gone meanwhile, or an inspect too large to read: looked at once, not every pass.
        this.deps.log.debug("could not read a container's environment for leftover references", { container: c.Id.slice(0, 12) });
        this.seen.set(c.Id, undefined);
        continue;
      }
      const variables = literalReferences(entries);
      const found = variables.length ? { id: c.Id, name: (c.Names?.[0] ?? c.Id).replace(/^\//, ""), variables } : undefined;
      this.seen.set(c.Id, found);
      if (found) this.deps.onFound(found);
    }
    this.deps.onCount(this.list().length);
  }
}
