/**
 * Who may have which secret, the pure parts (issue 18, findings 2, 3, 8): grants for labels,
 * volumes and services, the built-in default's opt-in, the per-container label limits, image
 * labels subtracted and an image that cannot be inspected failing closed (never cached).
 * The same behaviour end to end: test/security/grants.test.ts.
 */
import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { builtinDefaultConfig } from "../../src/config/defaults.ts";
import { parseConfig } from "../../src/config/index.ts";
import { DsoError } from "../../src/errors.ts";
import { desiredFor, factsFromList, grantVolumeSecret } from "../../src/reloader/desired.ts";
import { ImageLabels, ownLabels } from "../../src/reloader/labels.ts";
import { grantSecret, MAX_LABEL_SECRETS, selectContainer } from "../../src/reloader/selection.ts";

const yaml = `
providers:
  cloud:
    type: vault
    config: { address: "http://127.0.0.1:8200", token: t }
secrets:
  - name: open_key
  - name: payments_key
    targets: { labels: { app: payments } }
  - name: team_key
    targets: { containers: [team], volumes: [team-vol] }
  - name: env_key
    inject: { type: env }
    mappings: { password: DB_PASSWORD }
`;
const { config } = parseConfig(yaml, "dso.yaml", {});
const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const asContainer = (name: string, labels: Record<string, string> = {}) => ({ kind: "container" as const, id, name, labels });
const labelled = (secrets: string, extra: Record<string, string> = {}) => ({ "dso.reloader": "true", "dso.secrets": secrets, ...extra });

describe("grants", () => {
  test("a declared secret without targets goes to whoever asks; with targets only to them", () => {
    expect(grantSecret("open_key", config, asContainer("any"))).toHaveProperty("spec.name", "open_key");
    expect(grantSecret("payments_key", config, asContainer("x", { app: "payments" }))).toHaveProperty("spec.name", "payments_key");
    expect(grantSecret("payments_key", config, asContainer("x", { app: "other" }))).toEqual({ refused: expect.stringContaining("limited to its targets") });
    expect(grantSecret("team_key", config, asContainer("team"))).toHaveProperty("spec");
    expect(grantSecret("team_key", config, asContainer(id.slice(0, 12)))).toHaveProperty("refused");
    expect(grantSecret("team_key", config, { kind: "volume", name: "team-vol" })).toHaveProperty("spec");
    expect(grantSecret("team_key", config, { kind: "volume", name: "team" })).toHaveProperty("refused");
    expect(grantSecret("payments_key", config, { kind: "volume", name: "app" })).toHaveProperty("refused");
  });

  test("a typo of a declared name is refused with \"did you mean\" the declared one; an unrelated name gets no guess", () => {
    expect(grantSecret("open_kye", config, asContainer("x"))).toEqual({ refused: expect.stringContaining('does not declare "open_kye" (did you mean "open_key"?)') });
    expect(grantSecret("prod_db", config, asContainer("x"))).toEqual({ refused: expect.not.stringContaining("did you mean") });
  });

  test("an undeclared name is refused unless one provider allows undeclared names", () => {
    expect(grantSecret("prod_db", config, asContainer("x"))).toEqual({ refused: 'dso.yaml does not declare "prod_db": list it in secrets[] (or set providers.cloud.allow_undeclared: true)' });
    const open = parseConfig(`${yaml.replace("    type: vault", "    type: vault\n    allow_undeclared: true")}`, "dso.yaml", {}).config;
    expect(grantSecret("prod_db", open, asContainer("x"))).toHaveProperty("spec.provider", "cloud");
    const two = parseConfig("providers:\n  a:\n    type: file\n    allow_undeclared: true\n  b:\n    type: file\n    allow_undeclared: true\n", "dso.yaml", {}).config;
    expect(grantSecret("prod_db", two, asContainer("x"))).toEqual({ refused: expect.stringContaining("several providers allow undeclared names (a, b)") });
  });

  test("the zero-config default and a dso.yaml without providers serve undeclared names; an explicit provider does not", () => {
    expect(builtinDefaultConfig().providers.file?.allowUndeclared).toBe(true);
    expect(grantSecret("db_password", builtinDefaultConfig(), asContainer("app"))).toHaveProperty("spec.provider", "file");
    expect(parseConfig("agent:\n  cache: true\n", "dso.yaml", {}).config.providers.file?.allowUndeclared).toBe(true);
    expect(parseConfig("providers:\n  file:\n    type: file\n", "dso.yaml", {}).config.providers.file?.allowUndeclared).toBe(false);
  });

  test("allow_undeclared must be a boolean, and is reported at its line", () => {
    expect(() => parseConfig("providers:\n  f:\n    type: file\n    allow_undeclared: maybe\n", "dso.yaml", {})).toThrow(
      'dso.yaml:4: providers.f.allow_undeclared: must be true or false (got "maybe")',
    );
  });

  test("a DSO volume asking for a secret declared inject: env gets it as a file (issue 22: it was silently dropped)", () => {
    const spec = grantVolumeSecret("app-secrets", "env_key", config);
    expect(spec.inject).toMatchObject({ type: "file" });
    // Files are named as for any volume secret, not after the environment variables.
    expect(spec.mappings).toEqual({});
    // A labelled container still gets it as a variable.
    expect(grantSecret("env_key", config, asContainer("app"))).toHaveProperty("spec.inject.type", "env");
  });

  test("a DSO volume's secrets= names are granted like labels, else DELIVERY_REFUSED naming the volume", () => {
    expect(grantVolumeSecret("team-vol", "team_key", config).name).toBe("team_key");
    for (const [volume, name, words] of [
      ["v1", "team_key", "volume v1: secret \"team_key\" is limited to its targets"],
      ["v1", "prod_db", "volume v1: dso.yaml does not declare \"prod_db\""],
      ["v1", "x".repeat(3000), "volume v1: option secrets has a name of 3000 characters"],
    ] as const) {
      let error: unknown;
      try {
        grantVolumeSecret(volume, name, config);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(DsoError);
      expect((error as DsoError).code).toBe("DELIVERY_REFUSED");
      expect((error as DsoError).message).toContain(words);
    }
  });
});

describe("selection refusals and label limits", () => {
  test("refused names are one line each naming container and label; granted ones are still selected", () => {
    const out = selectContainer({ id, name: "web", labels: labelled("open_key,prod_db,team_key") }, config);
    expect(out.selected && out.selection.secrets.map((s) => s.name)).toEqual(["open_key"]);
    expect(out.refused.map((r) => r.secrets)).toEqual([["prod_db"], ["team_key"]]);
    for (const r of out.refused) {
      expect(r.message).toStartWith("container web: label dso.secrets names ");
      expect(r.message).not.toContain("\n");
    }
  });

  test("a Swarm service is refused the same way, named as a service", () => {
    const out = selectContainer({ id, name: "api", labels: labelled("team_key"), kind: "service" }, config);
    expect(out.selected).toBe(false);
    expect(out.refused[0]?.message).toStartWith("service api: label dso.secrets names \"team_key\", refused");
  });

  test("a name over 2,048 characters, too many names or a control character skip that container only, in one short line", () => {
    for (const [secrets, words] of [
      ["x".repeat(3000), "has a name of 3000 characters; at most 2048"],
      [Array.from({ length: 6000 }, (_, i) => `n${i}`).join(","), `names 6000 secrets; at most ${MAX_LABEL_SECRETS} per container`],
      ["ok,bad\u001b[31m", "has a name with characters other than printable ASCII"],
    ] as const) {
      const out = selectContainer({ id, name: "evil", labels: labelled(secrets) }, config);
      expect(out.selected).toBe(false);
      expect(out.refused).toHaveLength(1);
      expect(out.refused[0]!.secrets).toEqual([]);
      expect(out.refused[0]!.message).toContain(`container evil: label dso.secrets ${words}`);
      expect(out.refused[0]!.message.length).toBeLessThan(300);
      expect(out.refused[0]!.message).not.toContain("\u001b");
    }
    expect(selectContainer({ id, name: "fine", labels: labelled(Array.from({ length: MAX_LABEL_SECRETS }, () => "open_key").join(",")) }, config).selected).toBe(true);
  });
});

describe("image labels", () => {
  test("any label the image set to the same value is the image's: it grants nothing", () => {
    const image = { app: "payments", "dso.reloader": "true" };
    expect(ownLabels({ app: "payments", "dso.reloader": "true", tier: "web" }, image)).toEqual({ labels: { tier: "web" }, dropped: ["dso.reloader"] });
    expect(ownLabels({ app: "other" }, image).labels).toEqual({ app: "other" });
  });

  test("an image that cannot be inspected makes the labels unknown, and that is not cached", async () => {
    let inspections = 0;
    let gone = true;
    const docker = {
      getImage: () => ({
        inspect: async () => {
          inspections++;
          if (gone) throw Object.assign(new Error("(HTTP code 404) no such image"), { statusCode: 404 });
          return { Config: { Labels: { app: "payments" } } };
        },
      }),
    } as unknown as Dockerode;
    const images = new ImageLabels(docker, { warn: () => {} });
    const first = await images.own(id, "c", "sha256:feedbeef", { app: "payments" });
    expect(first).toEqual({ known: false, merged: { app: "payments" }, problem: expect.stringContaining("its image feedbeef cannot be inspected") });
    gone = false;
    expect(await images.own(id, "c", "sha256:feedbeef", { app: "payments" })).toEqual({ known: true, labels: {} });
    await images.own(id, "c", "sha256:feedbeef", { app: "payments" });
    expect(inspections).toBe(2);
  });

  test("a container with unknown labels is granted nothing by labels or targets, and told why in one line", () => {
    const entry = { Id: id, Names: ["/team"], ImageID: "sha256:gone", Labels: {}, State: "running", Mounts: [] } as unknown as Dockerode.ContainerInfo;
    const unknown = { known: false as const, merged: labelled("open_key", { app: "payments" }), problem: "its image gone cannot be inspected" };
    const { desired } = desiredFor(factsFromList(entry, unknown), { config, volumeOptions: () => undefined });
    expect(desired?.selection).toBeUndefined();
    expect(desired?.targets).toEqual([]);
    expect(desired?.refusals).toEqual([
      { secrets: ["open_key", "payments_key", "team_key"], message: "container team: its image gone cannot be inspected; nothing is delivered to it by labels or targets" },
    ]);
    const quiet = factsFromList({ ...entry, Names: ["/other"] } as Dockerode.ContainerInfo, { known: false, merged: { maintainer: "x" }, problem: "gone" });
    expect(desiredFor(quiet, { config, volumeOptions: () => undefined }).desired).toBeUndefined();
  });
});

describe("volume-only containers", () => {
  test("a container's dso.update.strategy label decides over dso.yaml for a container served only through a DSO volume", () => {
    const declared = parseConfig("providers:\n  f:\n    type: file\ndefaults:\n  rotation: { enabled: true, strategy: restart }\nsecrets:\n  - name: api_key\n", "dso.yaml", {}).config;
    const entry = {
      Id: id,
      Names: ["/api"],
      ImageID: "sha256:img",
      Labels: {},
      State: "running",
      Mounts: [{ Type: "volume", Name: "vol", Destination: "/run/secrets", Driver: "dso" }],
    } as unknown as Dockerode.ContainerInfo;
    const volumeOptions = () => ({ secrets: "api_key" });
    const withLabel = desiredFor(factsFromList(entry, { known: true, labels: { "dso.reloader": "true", "dso.update.strategy": "none" } }), { config: declared, volumeOptions });
    expect(withLabel.desired?.strategy).toBe("none");
    const without = desiredFor(factsFromList(entry, { known: true, labels: {} }), { config: declared, volumeOptions });
    expect(without.desired?.strategy).toBe("restart");
  });
});
