/**
 * `secrets[].dynamic`: a Vault secret issued on demand with a lease (database/AWS/any
 * `<engine>/creds/<role>`, PKI `<engine>/issue/<role>`), tracked by the lease keeper
 * (src/leases/). DynamicSchema (schema.ts) checks shapes; `resolveLease` checks what depends on
 * the provider and the engine kind, and applies the defaults (docs/configuration.md, "Leases").
 */
import type { IssueCollector } from "./collect.ts";
import { DYNAMIC_PATH, PKI_ISSUE_PARAMS, type DynamicInput, type LeaseScope } from "./schema.ts";

export const DEFAULT_RENEW_AT = 2 / 3;
export const DEFAULT_REISSUE_MARGIN = 0.15;
export const DEFAULT_REVOKE_GRACE_MS = 10_000;

export interface LeaseSpec {
  /** The engine's mount path (`database`, `pki`, `team/aws`). */
  engine: string;
  /** `creds`: GET `<engine>/creds/<role>`; `issue`: POST `<engine>/issue/<role>` with `params` (PKI). */
  kind: "creds" | "issue";
  role: string;
  params: Record<string, string>;
  /** `container`: one credential per container (default); `shared`: one for all consumers. */
  scope: LeaseScope;
  /** Renew when this share of the lease has passed (default 2/3). */
  renewAt: number;
  /** Issue a replacement when less than this share of the lease is left and renewal cannot extend it (default 15 %). */
  reissueMargin: number;
  /** Revoke a consumer's lease when it is removed (default on), after `revokeGraceMs`. */
  revokeOnRemove: boolean;
  revokeGraceMs: number;
}

export function resolveLease(
  secret: { dynamic?: DynamicInput; version?: string; stage?: string },
  index: number,
  providerType: string | undefined,
  issues: IssueCollector,
): LeaseSpec | undefined {
  const input = secret.dynamic;
  if (!input) return undefined;
  const at = ["secrets", index, "dynamic"];
  for (const key of ["version", "stage"] as const) {
    if (secret[key] !== undefined) issues.error(["secrets", index, key], "cannot be combined with dynamic (each issue is a new credential)");
  }
  if (providerType !== undefined && providerType !== "vault") {
    issues.error(at, `needs a vault provider (this secret's provider is of type ${providerType})`);
    return undefined;
  }
  // Leases die with the token that created them. Token and AppRole auth both work: fetch processes
  // borrow the long-lived process's token (src/rpc/fetch-child.ts); `dso doctor` checks its shape.
  const [, engine, kind, role] = DYNAMIC_PATH.exec(input.path)! as unknown as [string, string, "creds" | "issue", string];
  const params = input.params ?? {};
  if (kind === "creds" && Object.keys(params).length > 0) issues.error([...at, "params"], `is only for "<engine>/issue/<role>" (PKI); a creds engine takes none`);
  if (kind === "issue") {
    for (const key of Object.keys(params)) {
      if (!(PKI_ISSUE_PARAMS as readonly string[]).includes(key)) issues.error([...at, "params", key], `unknown PKI issue parameter (one of ${PKI_ISSUE_PARAMS.join(", ")})`);
    }
    if (!params.common_name) issues.error([...at, "params"], 'needs "common_name" for a PKI issue');
  }
  const renewAt = input.renew_at ?? DEFAULT_RENEW_AT;
  const reissueMargin = input.reissue_margin ?? DEFAULT_REISSUE_MARGIN;
  if (renewAt >= 1 - reissueMargin) issues.error([...at, "renew_at"], `must come before the re-issue point (1 - reissue_margin = ${Math.round((1 - reissueMargin) * 100)} %)`);
  return {
    engine,
    kind,
    role,
    params,
    scope: input.scope ?? "container",
    renewAt,
    reissueMargin,
    revokeOnRemove: input.revoke_on_remove ?? true,
    revokeGraceMs: input.revoke_grace ?? DEFAULT_REVOKE_GRACE_MS,
  };
}
