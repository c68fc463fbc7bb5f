import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/index.ts";
import { buildDeliveries } from "../../src/reloader/files.ts";
import { secretBytes } from "../support/secret-bytes.ts";
import { selectContainer, type ContainerInfo } from "../../src/reloader/selection.ts";

const yaml = `
providers:
  vault:
    type: vault
    config: { address: "http://127.0.0.1:8200", token: t }
  files:
    type: file
defaults:
  rotation: { enabled: true, strategy: signal }
secrets:
  - name: app/db
    provider: vault
    inject: { type: file, path: /run/secrets, mode: "0440", uid: 100, gid: 101 }
    mappings: { username: db_user, password: db_pass }
  - name: api_key
    provider: files
    targets: { containers: [web] }
  - name: legacy
    provider: files
    inject: env
    mappings: { value: LEGACY_TOKEN }
    targets: { labels: { tier: backend } }
`;
const { config } = parseConfig(yaml, "dso.yaml", {});

const container = (name: string, labels: Record<string, string> = {}): ContainerInfo => ({
  id: `${name}-0123456789abcdef0123456789abcdef`,
  name,
  labels,
});

describe("container selection", () => {
  test("dso.reloader=true with dso.secrets selects those secrets; label strategy wins", () => {
    const out = selectContainer(
      container("web", { "dso.reloader": "true", "dso.secrets": " app/db , api_key", "dso.update.strategy": "rolling" }),
      config,
    );
    expect(out.selected).toBe(true);
    if (!out.selected) return;
    expect(out.selection.secrets.map((s) => s.name)).toEqual(["app/db", "api_key"]);
    expect(out.selection.strategy).toBe("rolling");
    expect(out.selection.signal).toBe("SIGHUP");
  });

  test("targets.containers and targets.labels select containers without dso labels", () => {
    const web = selectContainer(container("web"), config);
    expect(web.selected && web.selection.secrets.map((s) => s.name)).toEqual(["api_key"]);
    const backend = selectContainer(container("worker", { tier: "backend" }), config);
    expect(backend.selected && backend.selection.secrets.map((s) => s.name)).toEqual(["legacy"]);
    expect(selectContainer(container("other", { tier: "frontend" }), config).selected).toBe(false);
  });

  test("without a label the secret's rotation strategy applies", () => {
    const out = selectContainer(container("web"), config);
    expect(out.selected && out.selection.strategy).toBe("signal");
  });

  test("an invalid label value skips the container with a warning naming container and label", () => {
    const out = selectContainer(
      container("api", { "dso.reloader": "true", "dso.secrets": "app/db", "dso.update.strategy": "explode" }),
      config,
    );
    expect(out.selected).toBe(false);
    expect(out.warnings.join("\n")).toContain("container api: label dso.update.strategy=\"explode\" must be one of");
    for (const [label, value] of [
      ["dso.inject.mode", "0999"],
      ["dso.inject.uid", "-1"],
      ["dso.inject.path", "relative/path"],
      ["dso.update.signal", "SIGFOO"],
    ] as const) {
      const bad = selectContainer(container("api", { "dso.reloader": "true", "dso.secrets": "app/db", [label]: value }), config);
      expect(bad.selected).toBe(false);
      expect(bad.warnings.join("\n")).toContain(`label ${label}=`);
    }
  });

  test("a label naming a secret dso.yaml does not declare is refused, naming container and label", () => {
    const out = selectContainer(container("api", { "dso.reloader": "true", "dso.secrets": "nope" }), config);
    expect(out.selected).toBe(false);
    expect(out.refused).toEqual([{ secrets: ["nope"], message: expect.stringContaining('container api: label dso.secrets names "nope", refused: dso.yaml does not declare "nope"') }]);
  });

  test("with a provider that allows undeclared names, a label may name a secret that is not in secrets[]", () => {
    const single = parseConfig("providers:\n  local:\n    type: file\n    allow_undeclared: true\n", "dso.yaml", {}).config;
    const out = selectContainer(container("app", { "dso.reloader": "true", "dso.secrets": "db_password" }), single);
    expect(out.selected).toBe(true);
    if (!out.selected) return;
    expect(out.selection.secrets[0]).toMatchObject({ name: "db_password", provider: "local", inject: { type: "file", path: "/run/secrets" } });
    expect(out.selection.strategy).toBe("none");
  });

  test("dso.inject.* labels override the secret's file settings", () => {
    const out = selectContainer(
      container("api", {
        "dso.reloader": "true",
        "dso.secrets": "app/db",
        "dso.inject.path": "/var/run/creds",
        "dso.inject.mode": "0400",
        "dso.inject.uid": "1000",
        "dso.inject.gid": "1000",
      }),
      config,
    );
    if (!out.selected) throw new Error("not selected");
    const built = buildDeliveries(
      out.selection,
      new Map([["app/db", { fingerprint: "v1", value: secretBytes({ username: "u", password: "p" }) }]]),
    );
    expect(built.errors).toEqual([]);
    expect(built.groups[0]?.path).toBe("/var/run/creds");
    expect(built.groups[0]?.files.map((f) => [f.name, f.mode, f.uid, f.gid])).toEqual([
      ["db_user", 0o400, 1000, 1000],
      ["db_pass", 0o400, 1000, 1000],
    ]);
  });
});

describe("building files from values", () => {
  const select = (labels: Record<string, string>, name = "x") => {
    const out = selectContainer(container(name, { "dso.reloader": "true", ...labels }), config);
    if (!out.selected) throw new Error(out.warnings.join("; "));
    return out.selection;
  };

  test("mappings pick keys and name files; modes and owners come from inject", () => {
    const built = buildDeliveries(
      select({ "dso.secrets": "app/db" }),
      new Map([["app/db", { fingerprint: "v3", version: "3", value: secretBytes({ username: "u", password: "p", extra: "x" }) }]]),
    );
    const files = built.groups[0]!.files;
    expect(files.map((f) => f.name)).toEqual(["db_user", "db_pass"]);
    expect(new TextDecoder().decode(files[1]!.content)).toBe("p");
    expect(files[0]).toMatchObject({ mode: 0o440, uid: 100, gid: 101 });
    expect(built.groups[0]!.fingerprints).toEqual({ "app/db": "v3" });
  });

  test("a mapped key missing from the secret is an error naming the key, not the value", () => {
    const built = buildDeliveries(
      select({ "dso.secrets": "app/db" }),
      new Map([["app/db", { fingerprint: "v1", value: secretBytes({ username: "u", pass: "hunter2" }) }]]),
    );
    expect(built.errors[0]).toContain('key(s) "password" not found');
    expect(built.errors[0]).not.toContain("hunter2");
  });

  test("a plain secret without mappings becomes one file named after the secret", () => {
    const built = buildDeliveries(
      select({ "dso.secrets": "api_key" }, "web"),
      new Map([["api_key", { fingerprint: "h", value: secretBytes({ value: "k" }) }]]),
    );
    expect(built.groups[0]!.files.map((f) => f.name)).toEqual(["api_key"]);
  });

  test("binary values are decoded from base64", () => {
    const built = buildDeliveries(
      select({ "dso.secrets": "api_key" }, "web"),
      new Map([["api_key", { fingerprint: "h", value: secretBytes({ value: new Uint8Array([0, 1, 255]) }) }]]),
    );
    expect([...built.groups[0]!.files[0]!.content]).toEqual([0, 1, 255]);
  });

  test("env secrets become variables, not files", () => {
    const out = selectContainer(container("w", { tier: "backend" }), config);
    if (!out.selected) throw new Error("not selected");
    const built = buildDeliveries(out.selection, new Map([["legacy", { fingerprint: "h", value: secretBytes({ value: "tok" }) }]]));
    expect(built.env).toEqual({ LEGACY_TOKEN: "tok" });
    expect(built.groups).toEqual([]);
  });

  test("a secret that could not be fetched is reported by name", () => {
    const built = buildDeliveries(select({ "dso.secrets": "app/db" }), new Map());
    expect(built.errors).toEqual(['secret "app/db" is not available']);
  });
});

describe("labels baked into the image", () => {
  test("labels equal to the image's are dropped (dso.* ones listed for a warning); the container's own stay", async () => {
    const { ownLabels } = await import("../../src/reloader/labels.ts");
    const image = { "dso.reloader": "true", "dso.secrets": "prod-db", maintainer: "x" };
    const out = ownLabels({ "dso.reloader": "true", "dso.secrets": "prod-db", maintainer: "x", "dso.update.strategy": "none" }, image);
    expect(out.dropped).toEqual(["dso.reloader", "dso.secrets"]);
    expect(out.labels).toEqual({ "dso.update.strategy": "none" });
    expect(ownLabels({ maintainer: "y" }, image).labels).toEqual({ maintainer: "y" });
    expect(ownLabels({ "dso.secrets": "other" }, image).labels).toEqual({ "dso.secrets": "other" });
  });
});
