/**
 * deploy/Dockerfile builds with the classic builder too (issue 22: `--chmod requires BuildKit` on
 * Debian's docker.io). No registry here to build it, so the file is checked for BuildKit-only
 * syntax: COPY/ADD --chmod/--link/--parents, RUN --mount/--network/--security, heredocs.
 */
import { expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT } from "../support/dso-binary.ts";

const BUILDKIT_ONLY = [/^\s*(COPY|ADD)\b[^\n]*--(chmod|link|parents|exclude)\b/im, /^\s*RUN\b[^\n]*--(mount|network|security)\b/im, /<<-?\s*["']?[A-Z]+/m];

test("deploy/Dockerfile uses nothing that only BuildKit understands", async () => {
  const text = (await readFile(join(REPO_ROOT, "deploy", "Dockerfile"), "utf8"))
    .split("\n")
    // Comments (the classic builder reads `# syntax=` as one too).
    .filter((line) => !/^\s*#/.test(line))
    .join("\n");
  for (const pattern of BUILDKIT_ONLY) expect(text).not.toMatch(pattern);
});
