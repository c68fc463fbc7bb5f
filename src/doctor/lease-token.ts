/**
 * `dso doctor`: the Vault token of each provider that issues dynamic secrets must outlive the
 * leases it creates, because Vault revokes a token's leases with it (and with its parent, for a
 * child token). Asked through the provider's own process (`lease` call `token`, Vault's
 * `auth/token/lookup-self`): a periodic token, or one that never expires, passes; an orphan with
 * a TTL warns; a child token that is neither periodic nor an orphan fails.
 */
import type { DsoConfig } from "../config/types.ts";
import { describeError } from "../errors.ts";
import { ProviderProcess } from "../rpc/supervisor.ts";
import type { CheckResult } from "./types.ts";

const TOKEN_CHECK_TIMEOUT_MS = 10_000;

export type TokenShape = { ttlSeconds: number; renewable: boolean; orphan: boolean; periodSeconds?: number };

export function tokenVerdict(provider: string, token: TokenShape): CheckResult {
  const check = `vault token (${provider})`;
  if (token.periodSeconds !== undefined) return { check, status: "ok", detail: `periodic (${token.periodSeconds} s): outlives its leases while the agent renews it` };
  if (token.ttlSeconds === 0) return { check, status: "ok", detail: "never expires: outlives its leases" };
  if (!token.orphan) return { check, status: "fail", detail: "neither periodic nor an orphan: its leases are revoked with it or with its parent; create it with period= and no_parent=true" };
  return { check, status: "warn", detail: `an orphan that expires in ${token.ttlSeconds} s${token.renewable ? " (renewable up to its max TTL)" : ""}: every lease is revoked with it; prefer a periodic token` };
}

export async function checkLeaseTokens(config: DsoConfig | undefined, env: Record<string, string | undefined>): Promise<CheckResult[]> {
  const providers = [...new Set((config?.secrets ?? []).filter((s) => s.lease).map((s) => s.provider))];
  return Promise.all(
    providers.map(async (name) => {
      const spec = config!.providers[name]!;
      const process = new ProviderProcess({
        configure: { name, type: spec.type, auth: { ...(spec.auth.method ? { method: spec.auth.method } : {}), params: spec.auth.params }, config: spec.config },
        env,
      });
      try {
        const { token } = await process.lease({ op: "token" }, AbortSignal.timeout(TOKEN_CHECK_TIMEOUT_MS));
        return token ? tokenVerdict(name, token) : { check: `vault token (${name})`, status: "warn" as const, detail: "the provider did not describe its token" };
      } catch (error) {
        return { check: `vault token (${name})`, status: "fail" as const, detail: describeError(error) };
      } finally {
        await process.stop();
      }
    }),
  );
}
