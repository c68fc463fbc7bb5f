import { describe, expect, test } from "bun:test";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/parse.ts";
import { ConfigError } from "../../src/config/issues.ts";
import { buildDeliveries, knownGroupFingerprints } from "../../src/reloader/files.ts";
import type { Selection } from "../../src/reloader/selection.ts";
import { VersionMarkers } from "../../src/secrets/version-marker.ts";
import type { FetchedSecret } from "../../src/secrets/types.ts";
import { wipeSecretBytes } from "../../src/rpc/wire-values.ts";

const HEAD = "providers:\n  local:\n    type: file\n    config:\n      path: /tmp/none\n";
const enc = new TextEncoder();
const dec = new TextDecoder();

function errorsOf(text: string, file = "dso.yaml"): string[] {
  try {
    parseConfig(text, file, {});
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    throw error;
  }
  return [];
}

function fetched(entries: Record<string, Record<string, string>>): Map<string, FetchedSecret> {
  return new Map(Object.entries(entries).map(([name, keys]) => [name, { fingerprint: `fp-${name}`, value: new Map(Object.entries(keys).map(([k, v]) => [k, enc.encode(v)])) }]));
}

function selection(secrets: Selection["secrets"]): Selection {
  return { containerId: "c", containerName: "c", secrets, strategy: "none", signal: "SIGHUP", files: {}, healthCheckTimeoutMs: 0 };
}

const DSN = `${HEAD}secrets:
  - name: db
    templates:
      - file: dsn
        mode: 0440
        uid: 70
        template: |
          postgres://{{ .user }}:{{ .password | urlquery }}@{{ .host }}/app
      - file: db.env
        format: env
  - name: api
templates:
  - file: app.json
    secrets: [db, api]
    delimiters: ["[[", "]]"]
    template: '{"db": [[ .user | json ]], "token": [[ secret "api" "token" | json ]], "x": "{{ .not_a_template }}"}'
  - file: raw
    secrets: [db]
    template: "\${HOME}"
`;

describe("templates in dso.yaml", () => {
  test("per-secret and top-level templates resolve; template text is not ${VAR}-expanded", () => {
    const bad = errorsOf(DSN);
    // file names are checked (and may be expanded), template text is not expanded
    expect(bad).toEqual([]);
  });

  test("one render gives every output, with its mode and owner", () => {
    const { config } = parseConfig(DSN, "dso.yaml", {});
    const db = config.secrets.find((s) => s.name === "db")!;
    const api = config.secrets.find((s) => s.name === "api")!;
    const values = fetched({ db: { user: "app", password: "p@ss", host: "db" }, api: { token: "t1" } });
    const built = buildDeliveries(selection([db, api]), values);
    expect(built.errors).toEqual([]);
    const files = Object.fromEntries(built.groups[0]!.files.map((f) => [f.name, f]));
    expect(dec.decode(files.dsn!.content)).toBe("postgres://app:p%40ss@db/app\n");
    expect(files.dsn!.mode).toBe(0o440);
    expect(files.dsn!.uid).toBe(70);
    expect(dec.decode(files["db.env"]!.content)).toBe("host=db\npassword=p@ss\nuser=app\n");
    expect(JSON.parse(dec.decode(files["app.json"]!.content))).toEqual({ db: "app", token: "t1", x: "{{ .not_a_template }}" });
    expect(dec.decode(files.raw!.content)).toBe("${HOME}");
    expect(built.groups[0]!.fingerprints).toEqual({ db: "fp-db", api: "fp-api" });
    // The same fingerprints per directory without a value (what a Swarm pass checks before a fetch).
    const known = knownGroupFingerprints(selection([db, api]), (name) => values.get(name)?.fingerprint);
    expect(Object.fromEntries(known!)).toEqual(Object.fromEntries(built.groups.map((g) => [g.path, g.fingerprints])));
    expect(knownGroupFingerprints(selection([db, api]), (name) => (name === "api" ? undefined : "fp"))).toBeUndefined();
    // the rendered buffers belong to the values' window: wiping the values wipes them
    const dsn = files.dsn!.content;
    wipeSecretBytes(values.get("db")!.value);
    expect(dsn.every((b) => b === 0)).toBe(true);
  });

  test("one wave renders an output once for all its containers; another source value renders anew", () => {
    const { config } = parseConfig(DSN, "dso.yaml", {});
    const db = config.secrets.find((s) => s.name === "db")!;
    const api = config.secrets.find((s) => s.name === "api")!;
    const values = fetched({ db: { user: "app", password: "p@ss", host: "db" }, api: { token: "t1" } });
    const dsnOf = (built: ReturnType<typeof buildDeliveries>) => built.groups[0]!.files.find((f) => f.name === "dsn")!.content;
    // Two containers of one wave: the same value objects (the wave's window), one buffer.
    const first = dsnOf(buildDeliveries(selection([db, api]), values));
    const second = dsnOf(buildDeliveries(selection([db, api]), new Map(values)));
    expect(second).toBe(first);
    // Another window (new value objects, same bytes): rendered again, its own buffer.
    const other = dsnOf(buildDeliveries(selection([db, api]), fetched({ db: { user: "app", password: "p@ss", host: "db" }, api: { token: "t1" } })));
    expect(other).not.toBe(first);
    expect(dec.decode(other)).toBe(dec.decode(first));
  });

  test("a missing key is an error naming file:line and the key, and no file is built", () => {
    const { config } = parseConfig(DSN, "dso.yaml", {});
    const db = config.secrets.find((s) => s.name === "db")!;
    const built = buildDeliveries(selection([db]), fetched({ db: { user: "app", password: "s3cr3t-value" } }));
    expect(built.groups).toEqual([]);
    expect(built.errors.join()).toContain('dso.yaml:13: output "dsn": key "host" of secret "db" not found');
    expect(built.errors.join()).not.toContain("s3cr3t-value");
  });

  test("a top-level template whose other source is not delivered to the target: a clear error naming it, and no file", () => {
    const { config } = parseConfig(DSN, "dso.yaml", {});
    const db = config.secrets.find((s) => s.name === "db")!;
    // app.json reads db and api and goes with db; this container names only db.
    const built = buildDeliveries(selection([db]), fetched({ db: { user: "app", password: "s3cr3t-value", host: "db" } }));
    expect(built.groups).toEqual([]);
    expect(built.errors.join()).toContain('output "app.json": reads secret "api", which is not delivered to this target with "db"; name it there too');
    expect(built.errors.join()).not.toContain("s3cr3t-value");
  });

  test("a secret with env outputs gets rendered variables", () => {
    const { config } = parseConfig(`${HEAD}secrets:\n  - name: db\n    inject: { type: env }\n    templates:\n      - env: DATABASE_URL\n        template: "postgres://{{ .user }}@h"\n`, "dso.yaml", {});
    const built = buildDeliveries(selection(config.secrets), fetched({ db: { user: "u" } }));
    expect(built.env).toEqual({ DATABASE_URL: "postgres://u@h" });
  });

  test("config validate reports bad templates at their line", async () => {
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    templates:\n      - file: x\n        template: |\n          ok\n          {{ if .a }}\n`)).toEqual(["12: secrets.0.templates.0.template: missing {{end}}"]);
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    templates:\n      - file: x\n        template: '{{ env "HOME" }}'\n`)[0]).toContain('unknown function "env"');
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    templates:\n      - file: x\n`)[0]).toContain("needs exactly one of template, template_file or format");
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    templates:\n      - env: X\n        format: json\n`).join()).toContain("name the output with file:");
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    mappings: { a: b }\n    templates:\n      - file: x\n        format: yaml\n`)[0]).toContain("cannot be combined with mappings");
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\ntemplates:\n  - file: x\n    secrets: [db, nope]\n    format: json\n`)[0]).toContain('"nope"');
    const dir = await mkdtemp(join(tmpdir(), "dso-tpl-"));
    await writeFile(join(dir, "app.tmpl"), "line 1\n{{ .a | nofunc }}\n");
    expect(errorsOf(`${HEAD}secrets:\n  - name: db\n    templates:\n      - file: x\n        template_file: app.tmpl\n`, join(dir, "dso.yaml"))[0]).toContain(`${join(dir, "app.tmpl")}:2: unknown function "nofunc"`);
  });

  test("the version marker covers the template text", () => {
    const key = new Uint8Array(32).fill(7);
    const a = new VersionMarkers(key, () => "digest-a");
    const b = new VersionMarkers(key, () => "digest-b");
    const none = new VersionMarkers(key);
    const fps = { db: "fp1" };
    expect(a.marker(fps)).not.toBe(b.marker(fps));
    expect(a.marker(fps)).not.toBe(none.marker(fps));
    expect(new VersionMarkers(key, () => undefined).marker(fps)).toBe(none.marker(fps));
    expect(a.swarmToken("s", "/run/secrets/x", fps)).not.toBe(b.swarmToken("s", "/run/secrets/x", fps));
  });
});
