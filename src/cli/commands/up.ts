/**
 * `dso up` / `dso down`: docker compose with the Go DSO's `dso://` and `dsofile://` references
 * honoured (src/cli/compose/). Every argument goes to compose unchanged, so main.ts hands them over
 * before citty parses anything; these definitions only give `dso help` its text.
 */
import { defineCommand } from "citty";

const REFERENCES =
  "Takes every docker compose argument (global ones such as -f, -p, --project-directory included) and compose's own file discovery. " +
  "In a service's environment, VAR: dsofile://<secret>[#key] makes VAR the path of a file DSO writes before the entrypoint (a DSO volume at /run/secrets/dso); " +
  "VAR: dso://<secret>[#key] makes VAR hold the value (env injection by the agent, visible to docker inspect). Your compose files are not modified. " +
  "DSO_VOLUME_DRIVER names the volume driver (default dso).";

export const up = defineCommand({
  meta: { name: "up", description: `docker compose up with dso:// and dsofile:// references honoured. ${REFERENCES}` },
});

export const down = defineCommand({
  meta: { name: "down", description: "docker compose down for a project brought up with dso up (its DSO volumes included with -v)" },
});

export default up;
