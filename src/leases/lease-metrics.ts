/**
 * The lease keeper's Prometheus series (docs/metrics.md, "Leases"): gauges of active leases and of
 * the seconds to the soonest expiry (read at scrape time), counters of renewals, re-issues,
 * revocations and failures. Labels carry secret names and operations, never a lease id or value.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { LeaseEvents, LeaseKeeper } from "./lease-keeper.ts";

export function leaseMetrics(registry: Registry, keeper: () => LeaseKeeper | undefined): Partial<LeaseEvents> {
  new Gauge({
    name: "dso_leases_active",
    help: "Dynamic credentials (Vault leases) in use by consumers",
    registers: [registry],
    collect() {
      this.set(keeper()?.summary().active ?? 0);
    },
  });
  new Gauge({
    name: "dso_lease_seconds_to_expiry",
    help: "Seconds until the soonest active lease expires (absent when there is none)",
    registers: [registry],
    collect() {
      const seconds = keeper()?.summary().secondsToExpiry;
      if (seconds === undefined) this.reset();
      else this.set(seconds);
    },
  });
  const renewals = new Counter({ name: "dso_lease_renewals_total", help: "Lease renewals", labelNames: ["secret"], registers: [registry] });
  const reissues = new Counter({ name: "dso_lease_reissues_total", help: "New credentials issued to replace a consumer's credential", labelNames: ["secret"], registers: [registry] });
  const revocations = new Counter({ name: "dso_lease_revocations_total", help: "Leases revoked (replaced, consumer removed, secret removed)", labelNames: ["secret", "reason"], registers: [registry] });
  const failures = new Counter({ name: "dso_lease_failures_total", help: "Failed lease operations (issue, renew, replace, revoke)", labelNames: ["secret", "operation"], registers: [registry] });
  return {
    renewed: (r) => renewals.inc({ secret: r.secret }),
    issued: (r, replacement) => void (replacement && reissues.inc({ secret: r.secret })),
    revoked: (r, reason) => revocations.inc({ secret: r.secret, reason }),
    failed: (r, operation) => failures.inc({ secret: r.secret, operation }),
  };
}
