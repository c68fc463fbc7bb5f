/** `dso up` argument splitting, compose file discovery, references and the value-free extra file. */
import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discover, discoverFiles, splitArguments } from "../../../src/cli/compose/invocation.ts";
import { buildOverride } from "../../../src/cli/compose/override.ts";
import { referencesOf } from "../../../src/cli/compose/references.ts";

describe("dso up arguments", () => {
  test("global options go before the verb, -f files are taken out, the rest stays in order", () => {
    const inv = splitArguments(["-f", "a.yml", "--file=b.yml", "-fc.yml", "-p", "proj", "-d", "--build", "--project-directory", "/srv", "--verbose", "web", "-v"]);
    expect(inv.files).toEqual(["a.yml", "b.yml", "c.yml"]);
    expect(inv.globals).toEqual(["-p", "proj", "--project-directory", "/srv", "--verbose"]);
    expect(inv.projectDirectory).toBe("/srv");
    expect(inv.verbArgs).toEqual(["-d", "--build", "web", "-v"]);
  });

  test("a global option without its value is a usage error", () => {
    expect(() => splitArguments(["-p"])).toThrow("-p needs a value");
  });
});

describe("compose file discovery", () => {
  test("-f, COMPOSE_FILE, then the nearest directory upwards with its override file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dso-discover-"));
    try {
      await mkdir(join(dir, "sub/deeper"), { recursive: true });
      await writeFile(join(dir, "docker-compose.yml"), "services: {}\n");
      await writeFile(join(dir, "docker-compose.override.yml"), "services: {}\n");
      const none = splitArguments([]);
      expect(discoverFiles(none, "v1", {}, join(dir, "sub/deeper"))).toEqual([join(dir, "docker-compose.yml"), join(dir, "docker-compose.override.yml")]);
      expect(discoverFiles(none, "v1", { COMPOSE_FILE: "x.yml;y.yml", COMPOSE_PATH_SEPARATOR: ";" }, dir)).toEqual([join(dir, "x.yml"), join(dir, "y.yml")]);
      expect(discoverFiles(splitArguments(["-f", "z.yml"]), "v1", { COMPOSE_FILE: "x.yml" }, join(dir, "sub"))).toEqual([join(dir, "sub/z.yml")]);
      // COMPOSE_FILE from the project's .env (compose reads it too); the environment wins.
      await writeFile(join(dir, ".env"), "# project settings\nCOMPOSE_FILE='base.yml;prod.yml'\nCOMPOSE_PATH_SEPARATOR=; # ours\nOTHER=1\n");
      expect(discoverFiles(none, "v1", {}, dir)).toEqual([join(dir, "base.yml"), join(dir, "prod.yml")]);
      expect(discoverFiles(none, "v1", { COMPOSE_FILE: "env.yml" }, dir)).toEqual([join(dir, "env.yml")]);
      // compose stops reading that .env once given -f: it is passed on with --env-file.
      expect(discover(none, "v1", {}, dir).envFile).toBe(join(dir, ".env"));
      expect(discover(none, "v1", { COMPOSE_FILE: "env.yml" }, dir).envFile).toBe(join(dir, ".env"));
      await writeFile(join(dir, "alt.env"), 'COMPOSE_FILE="alt.yml:more.yml" # a comment after the quote\n');
      expect(discoverFiles(splitArguments(["--env-file", "alt.env"]), "v1", {}, dir)).toEqual([join(dir, "alt.yml"), join(dir, "more.yml")]);
      // v2 reads --env-file from the working directory, v1 from the project directory.
      await mkdir(join(dir, "proj"));
      const inProj = splitArguments(["--project-directory", "proj", "--env-file", "alt.env"]);
      expect(discoverFiles(inProj, "v2", {}, dir)).toEqual([join(dir, "proj/alt.yml"), join(dir, "proj/more.yml")]);
      expect(discover(inProj, "v2", {}, dir).envFile).toBeUndefined();
      await rm(join(dir, ".env"));
      await rm(join(dir, "docker-compose.yml"));
      await rm(join(dir, "docker-compose.override.yml"));
      expect(() => discoverFiles(none, "v1", {}, join(dir, "sub"))).toThrow("no compose file found");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("references and the extra compose file", () => {
  const model = {
    version: "3.8",
    services: {
      app: { user: "1000:2000", environment: { A_FILE: "dsofile://app/db#password", B: "dso://api$key", C: "plain", D: "postgres://dso://x" } },
      other: { environment: ["E=dso://e"] },
    },
  };

  test("whole values only; list-form environments too", () => {
    expect(referencesOf(model).map((r) => `${r.service}.${r.variable}=${r.kind}:${r.secret}#${r.key ?? ""}`)).toEqual([
      "app.A_FILE=file:app/db#password",
      "app.B=env:api$key#",
      "other.E=env:e#",
    ]);
    expect(() => referencesOf({ services: { s: { environment: { X: "dsofile://#k" } } } })).toThrow("is not dsofile://<secret>[#key]");
    // The agent sets a dso:// variable from a VAR=<secret> label: a name it would refuse is refused here.
    expect(() => referencesOf({ services: { s: { environment: { "my-var": "dso://x" } } } })).toThrow("a dso:// variable name must be letters, digits and _");
    expect(referencesOf({ services: { s: { environment: { "my-file": "dsofile://x" } } } })).toHaveLength(1);
  });

  test("the extra file names volumes, paths and labels, with $ escaped for compose", () => {
    const { text, envServices } = buildOverride(model, referencesOf(model), { driver: "dso" });
    const doc = JSON.parse(text);
    expect(doc.version).toBe("3.8");
    expect(doc.services.app.environment).toEqual({ A_FILE: "/run/secrets/dso/password", B: "" });
    expect(doc.services.app.labels).toEqual({ "dso.env": "B=api$$key" });
    const [volume] = Object.keys(doc.volumes);
    expect(doc.services.app.volumes).toEqual([`${volume}:/run/secrets/dso:ro`]);
    expect(doc.volumes[volume!]).toEqual({ driver: "dso", driver_opts: { secrets: "app/db", uid: "1000", gid: "2000" } });
    expect(envServices).toEqual(["app", "other"]);
    // A changed owner is a new volume (compose keeps an existing volume's old options).
    const other = { ...model, services: { ...model.services, app: { ...model.services.app, user: "1001" } } };
    expect(Object.keys(JSON.parse(buildOverride(other, referencesOf(other), { driver: "dso" }).text).volumes)).not.toEqual([volume]);
  });

  test("dso.yaml's mappings rename a dsofile:// file; a key they leave out is refused", () => {
    const m = { services: { s: { environment: { A: "dsofile://api#token", B: "dsofile://db" } } } };
    const mappings: Record<string, Record<string, string>> = { api: { token: "api_token", user: "api_user" }, db: { value: "db.pw" } };
    const doc = JSON.parse(buildOverride(m, referencesOf(m), { driver: "dso", mappingsOf: (s) => mappings[s] }).text);
    expect(doc.services.s.environment).toEqual({ A: "/run/secrets/dso/api_token", B: "/run/secrets/dso/db.pw" });
    const left = { services: { s: { environment: { A: "dsofile://api#password" } } } };
    expect(() => buildOverride(left, referencesOf(left), { driver: "dso", mappingsOf: (s) => mappings[s] })).toThrow("leave key password out");
  });

  test("an inject: env secret's mappings name variables: its volume files keep their default names", async () => {
    const { fileMappingsOf } = await import("../../../src/cli/compose/run.ts");
    const config = {
      secrets: [
        { name: "app/db", inject: { type: "env" }, mappings: { password: "DB_PASSWORD" } },
        { name: "api", inject: { type: "file" }, mappings: { token: "api_token" } },
      ],
    } as never;
    const m = { services: { s: { environment: { A: "dsofile://app/db#password", B: "dsofile://app/db#user", C: "dsofile://api#token" } } } };
    const doc = JSON.parse(buildOverride(m, referencesOf(m), { driver: "dso", mappingsOf: fileMappingsOf(config) }).text);
    expect(doc.services.s.environment).toEqual({ A: "/run/secrets/dso/password", B: "/run/secrets/dso/user", C: "/run/secrets/dso/api_token" });
  });

  test("two secrets writing one file name in a service are refused", () => {
    const clash = { services: { s: { environment: { A: "dsofile://one#k", B: "dsofile://two#k" } } } };
    expect(() => buildOverride(clash, referencesOf(clash), { driver: "dso" })).toThrow("would both write the file k");
  });
});

test("a reference inside a longer value is found, to be warned about", async () => {
  const { embeddedReferencesOf } = await import("../../../src/cli/compose/references.ts");
  expect(embeddedReferencesOf({ services: { api: { environment: { URL: "postgresql://dso://u:dso://p@db/x", OK: "dso://a" } } } })).toEqual(["api.URL"]);
});
