/**
 * `dso up` / `dso down`: run `docker compose` (or `docker-compose`, whichever is installed) with
 * the user's files, their discovery and every argument unchanged, plus one extra file
 * (override.ts) that holds no value, in a 0700 directory of its own under the temporary
 * directory, removed when compose exits. Values never pass through compose: dsofile:// secrets
 * are written by the DSO volume driver, dso:// values by the agent's env injection.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConfigPath, loadConfig } from "../../config/index.ts";
import type { DsoConfig } from "../../config/types.ts";
import { DsoError } from "../../errors.ts";
import { discover, splitArguments, type ComposeFlavour } from "./invocation.ts";
import { buildOverride } from "./override.ts";
import { embeddedReferencesOf, referencesOf, type SecretReference } from "./references.ts";

export const ENV_CAVEAT =
  "dso:// puts the value in the container's environment: anyone who can run `docker inspect` reads it, and Docker stores it on the host's disk (config.v2.json). Prefer dsofile://.";

interface ComposeCommand {
  argv: string[];
  flavour: ComposeFlavour;
}

function runs(argv: string[]): boolean {
  try {
    return Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore", stdin: "ignore" }).exitCode === 0;
  } catch {
    return false;
  }
}

/** `docker compose` when the plugin answers, else `docker-compose` on PATH. */
export function findCompose(env: Readonly<Record<string, string | undefined>>): ComposeCommand {
  if (Bun.which("docker", { PATH: env.PATH ?? "" }) && runs(["docker", "compose", "version"])) return { argv: ["docker", "compose"], flavour: "v2" };
  if (Bun.which("docker-compose", { PATH: env.PATH ?? "" })) return { argv: ["docker-compose"], flavour: "v1" };
  throw new DsoError("USAGE", "neither `docker compose` nor `docker-compose` is installed");
}

async function composeConfig(compose: ComposeCommand, globals: string[], files: string[]): Promise<unknown> {
  const proc = Bun.spawn([...compose.argv, ...globals, ...files.flatMap((f) => ["-f", f]), "config"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const [text, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0) throw new DsoError("USAGE", `${compose.argv.join(" ")} config failed (exit ${code})`);
  return Bun.YAML.parse(text);
}

function volumeDriver(env: Readonly<Record<string, string | undefined>>): string {
  return env.DSO_VOLUME_DRIVER || "dso";
}

/** A secret's mappings as a DSO volume applies them: an `inject: env` secret's name variables, so its files keep the default names. */
export function fileMappingsOf(config: Pick<DsoConfig, "secrets">): (secret: string) => Readonly<Record<string, string>> | undefined {
  return (secret) => {
    const spec = config.secrets.find((s) => s.name === secret);
    return spec?.inject.type === "file" ? spec.mappings : undefined;
  };
}

/**
 * The mappings dso.yaml gives the secrets of dsofile:// references, when this user can read the
 * agent's dso.yaml (they rename the volume's files); undefined when there is none to read.
 */
async function readableMappings(refs: readonly SecretReference[]): Promise<((secret: string) => Readonly<Record<string, string>> | undefined) | undefined> {
  if (!refs.some((r) => r.kind === "file")) return undefined;
  try {
    const { config } = await loadConfig(findConfigPath({}), process.env);
    return fileMappingsOf(config);
  } catch {
    return undefined; // not readable here (the agent's own, root-only): the default file names
  }
}

/** Runs compose `verb` for `args`; resolves with compose's exit code. */
export async function runComposeVerb(verb: "up" | "down", args: readonly string[]): Promise<number> {
  const env = process.env;
  const compose = findCompose(env);
  const inv = splitArguments(args);
  const discovered = discover(inv, compose.flavour, env, process.cwd());
  const files = discovered.files;
  // COMPOSE_FILE came from a .env compose stops reading once it is given -f: pass it on.
  if (discovered.envFile) inv.globals.push("--env-file", discovered.envFile);
  if (files.includes("-")) throw new DsoError("USAGE", "dso up reads the compose file itself: give it a path, not -f -");
  const model = await composeConfig(compose, inv.globals, files);
  const refs = referencesOf(model);
  for (const where of embeddedReferencesOf(model)) {
    process.stderr.write(`dso: ${where} holds a dso:// or dsofile:// reference inside a longer value: only a whole value is a reference; this one stays literal\n`);
  }
  const extra: string[] = [];
  let dir: string | undefined;
  if (refs.length > 0) {
    const override = buildOverride(model, refs, { driver: volumeDriver(env), mappingsOf: await readableMappings(refs) });
    if (verb === "up" && override.envServices.length > 0) process.stderr.write(`dso: ${ENV_CAVEAT}\n`);
    dir = mkdtempSync(join(tmpdir(), "dso-compose-"));
    const path = join(dir, "dso-references.json");
    writeFileSync(path, override.text, { mode: 0o600 });
    extra.push("-f", path);
  }
  // The terminal's Ctrl-C reaches compose too (same process group): compose decides, we wait.
  const ignore = () => {};
  process.on("SIGINT", ignore);
  process.on("SIGTERM", ignore);
  try {
    const proc = Bun.spawn([...compose.argv, ...inv.globals, ...files.flatMap((f) => ["-f", f]), ...extra, verb, ...inv.verbArgs], {
      stdio: ["inherit", "inherit", "inherit"],
    });
    return await proc.exited;
  } finally {
    process.off("SIGINT", ignore);
    process.off("SIGTERM", ignore);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
