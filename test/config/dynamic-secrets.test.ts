import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/index.ts";

const PROVIDERS = `providers:
  vault:
    type: vault
    config: { address: "http://127.0.0.1:8200" }
  files:
    type: file
    config: { path: /etc/dso/secrets }
`;

function errorsOf(text: string): string[] {
  try {
    parseConfig(text, "dso.yaml", {});
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  return [];
}

describe("secrets[].dynamic (Vault leases)", () => {
  test("a database creds role: defaults are scope container, renewal at 2/3, re-issue margin 15 %, revoke on removal after 10 s", () => {
    const { config } = parseConfig(`${PROVIDERS}secrets:\n  - name: db\n    provider: vault\n    dynamic: { path: database/creds/app }\n`, "dso.yaml", {});
    expect(config.secrets[0]?.lease).toEqual({
      engine: "database",
      kind: "creds",
      role: "app",
      params: {},
      scope: "container",
      renewAt: 2 / 3,
      reissueMargin: 0.15,
      revokeOnRemove: true,
      revokeGraceMs: 10_000,
    });
  });

  test("a PKI issue with its parameters, a shared scope and every knob written", () => {
    const text = `${PROVIDERS}secrets:
  - name: tls
    provider: vault
    dynamic:
      path: team/pki/issue/web
      params: { common_name: web.internal, alt_names: "a.internal,b.internal", ttl: 1h }
      scope: shared
      renew_at: 50%
      reissue_margin: 0.2
      revoke_on_remove: false
      revoke_grace: 2s
`;
    const lease = parseConfig(text, "dso.yaml", {}).config.secrets[0]?.lease;
    expect(lease).toMatchObject({ engine: "team/pki", kind: "issue", role: "web", scope: "shared", renewAt: 0.5, reissueMargin: 0.2, revokeOnRemove: false, revokeGraceMs: 2000 });
    expect(lease?.params).toEqual({ common_name: "web.internal", alt_names: "a.internal,b.internal", ttl: "1h" });
  });

  test("every mistake is reported with its line and field", () => {
    const text = `${PROVIDERS}secrets:
  - name: a
    provider: vault
    dynamic: { path: database/data/app }
  - name: b
    provider: vault
    dynamic: { path: pki/issue/web, params: { common_nam: x } }
  - name: c
    provider: files
    dynamic: { path: aws/creds/deploy }
  - name: d
    provider: vault
    version: "3"
    dynamic: { path: aws/creds/deploy, scope: everyone, renew_at: 90%, leese: 1 }
  - name: e
    provider: vault
    dynamic: { path: database/creds/app, params: { ttl: 1h }, renew_at: 0.9 }
`;
    const errors = errorsOf(text);
    expect(errors).toContain('dso.yaml:11: secrets.0.dynamic.path: must be "<engine>/creds/<role>" or "<engine>/issue/<role>" (PKI) (got "database/data/app")');
    expect(errors.some((e) => e.startsWith("dso.yaml:14: secrets.1.dynamic.params.common_nam: unknown PKI issue parameter"))).toBe(true);
    expect(errors).toContain('dso.yaml:14: secrets.1.dynamic.params: needs "common_name" for a PKI issue');
    expect(errors).toContain("dso.yaml:17: secrets.2.dynamic: needs a vault provider (this secret's provider is of type file)");
    expect(errors.some((e) => /^dso\.yaml:21: secrets\.3\.dynamic\.scope: must be one of container, shared/.test(e))).toBe(true);
    expect(errors.some((e) => /^dso\.yaml:21: secrets\.3\.dynamic\.leese: unknown key/.test(e))).toBe(true);
    expect(errors).toContain('dso.yaml:24: secrets.4.dynamic.params: is only for "<engine>/issue/<role>" (PKI); a creds engine takes none');
    expect(errors).toContain("dso.yaml:24: secrets.4.dynamic.renew_at: must come before the re-issue point (1 - reissue_margin = 85 %)");
  });

  test("dynamic takes AppRole auth too: fetch processes borrow the long-lived process's token, no login of their own", () => {
    const text = "providers:\n  vault:\n    type: vault\n    auth: { method: approle, params: { role_id: r, secret_id: s } }\nsecrets:\n  - name: db\n    dynamic: { path: database/creds/app }\n";
    expect(errorsOf(text)).toEqual([]);
  });

  test("version cannot be combined with dynamic", () => {
    const errors = errorsOf(`${PROVIDERS}secrets:\n  - name: d\n    provider: vault\n    version: "3"\n    dynamic: { path: aws/creds/deploy }\n`);
    expect(errors).toEqual(["dso.yaml:11: secrets.0.version: cannot be combined with dynamic (each issue is a new credential)"]);
  });
});
