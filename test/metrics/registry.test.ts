import { afterEach, describe, expect, test } from "bun:test";
import { DsoError } from "../../src/errors.ts";
import { Metrics, outcomeOf } from "../../src/metrics/registry.ts";
import { startMetricsListener, type MetricsListener } from "../../src/metrics/server.ts";

/** Sample lines (`name{labels} value`) of the exposition, without comments. */
function samples(text: string): string[] {
  return text.split("\n").filter((line) => line && !line.startsWith("#"));
}

function value(text: string, series: string): number | undefined {
  const line = samples(text).find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("the metrics registry", () => {
  test("every metric the agent reports moves when its event happens", async () => {
    const m = new Metrics({ version: "1.2.3", processMetrics: false });
    m.pollFinished({ provider: "vault", outcome: "ok", secrets: ["app/db"] });
    m.pollFinished({ provider: "vault", outcome: "PROVIDER_TIMEOUT" });
    m.providerCall({ provider: "vault", operation: "fingerprint", outcome: "ok", seconds: 0.02 });
    m.valuesFetched({ provider: "vault", outcome: "ok", count: 3 });
    m.providerRestarted("vault");
    m.delivered({ mode: "exec", outcome: "ok", seconds: 0.03 });
    m.delivered({ mode: "plugin", outcome: "DELIVERY_REFUSED", seconds: 0.001 });
    m.rotated({ strategy: "rolling", outcome: "ok" });
    m.changeDelivered(1.5);
    m.dockerEventsReconnected();
    m.reconcilePass({ outcome: "ok", seconds: 0.2 });
    m.notification({ event: "rotation_failed", outcome: "dropped" });
    m.audited("delivery");
    const text = await m.exposition();
    expect(value(text, 'dso_provider_polls_total{provider="vault",outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_provider_polls_total{provider="vault",outcome="PROVIDER_TIMEOUT"}')).toBe(1);
    expect(value(text, 'dso_provider_calls_total{provider="vault",operation="fingerprint",outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_provider_call_duration_seconds_count{provider="vault",operation="fingerprint"}')).toBe(1);
    expect(value(text, 'dso_secret_value_fetches_total{provider="vault",outcome="ok"}')).toBe(3);
    expect(value(text, 'dso_provider_restarts_total{provider="vault"}')).toBe(1);
    expect(value(text, 'dso_deliveries_total{mode="exec",outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_deliveries_total{mode="plugin",outcome="DELIVERY_REFUSED"}')).toBe(1);
    expect(value(text, 'dso_delivery_duration_seconds_bucket{le="0.05",mode="exec"}')).toBe(1);
    expect(value(text, 'dso_rotations_total{strategy="rolling",outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_change_to_delivered_seconds_count')).toBe(1);
    expect(value(text, "dso_docker_event_stream_reconnects_total")).toBe(1);
    expect(value(text, 'dso_reconcile_passes_total{outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_notifications_total{event="rotation_failed",outcome="dropped"}')).toBe(1);
    expect(value(text, 'dso_audit_events_total{event="delivery"}')).toBe(1);
    expect(value(text, 'dso_build_info{version="1.2.3"}')).toBe(1);
    const staleness = value(text, 'dso_secret_staleness_seconds{secret="app/db",provider="vault"}');
    expect(staleness).toBeGreaterThanOrEqual(0);
    expect(staleness).toBeLessThan(5);
  });

  test("names follow Prometheus conventions: dso_ prefix, counters _total, durations _seconds", async () => {
    const m = new Metrics({ processMetrics: false });
    const text = await m.exposition();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({ name: name!, type: type! }));
    expect(types.length).toBeGreaterThanOrEqual(15);
    for (const { name, type } of types) {
      expect(name).toMatch(/^dso_[a-z_]+$/);
      if (type === "counter") expect(name).toEndWith("_total");
      if (type === "histogram") expect(name).toEndWith("_seconds");
    }
  });

  test("staleness grows from the last successful poll and failed polls do not reset it", async () => {
    const m = new Metrics({ processMetrics: false });
    m.pollFinished({ provider: "file", outcome: "ok", secrets: ["db"], at: Date.now() - 60_000 });
    m.pollFinished({ provider: "file", outcome: "PROVIDER_UNAVAILABLE", secrets: ["db"] });
    expect(value(await m.exposition(), 'dso_secret_staleness_seconds{secret="db",provider="file"}')).toBeGreaterThanOrEqual(60);
    m.forgetSecret("db");
    expect(await m.exposition()).not.toContain('secret="db"');
  });

  test("a label can only hold a value from its closed set: anything else becomes other / INTERNAL", async () => {
    const m = new Metrics({ processMetrics: false });
    const planted = "hunter2-planted-value";
    m.delivered({ mode: planted, outcome: "ok", seconds: 0 });
    m.rotated({ strategy: planted, outcome: planted as never });
    m.providerCall({ provider: "file", operation: planted, outcome: "ok", seconds: 0 });
    const text = await m.exposition();
    expect(text).not.toContain(planted);
    expect(value(text, 'dso_deliveries_total{mode="other",outcome="ok"}')).toBe(1);
    expect(value(text, 'dso_rotations_total{strategy="other",outcome="INTERNAL"}')).toBe(1);
  });

  test("outcomeOf: ok, the DsoError code, or INTERNAL", () => {
    expect(outcomeOf()).toBe("ok");
    expect(outcomeOf(new DsoError("SECRET_NOT_FOUND", "x"))).toBe("SECRET_NOT_FOUND");
    expect(outcomeOf(new Error("boom"))).toBe("INTERNAL");
  });

  test("process metrics (RSS, CPU) are included by default", async () => {
    const text = await new Metrics().exposition();
    expect(text).toContain("process_resident_memory_bytes");
    expect(text).toContain("process_cpu_seconds_total");
  });

  test("a scrape of 1,000 secrets' staleness stays fast", async () => {
    const m = new Metrics({ processMetrics: false });
    m.pollFinished({ provider: "aws", outcome: "ok", secrets: Array.from({ length: 1000 }, (_, i) => `app/secret-${i}`) });
    await m.exposition();
    const started = performance.now();
    const text = await m.exposition();
    const ms = performance.now() - started;
    expect(samples(text).filter((l) => l.startsWith("dso_secret_staleness_seconds{")).length).toBe(1000);
    expect(ms).toBeLessThan(250);
  });
});

describe("the metrics listener", () => {
  let listener: MetricsListener | undefined;
  afterEach(async () => {
    await listener?.stop();
    listener = undefined;
  });

  test("serves the exposition on 127.0.0.1:<port>/metrics and nothing else", async () => {
    const m = new Metrics({ processMetrics: false });
    listener = startMetricsListener(m, "127.0.0.1:0");
    expect(listener.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    m.dockerEventsReconnected();
    const response = await fetch(listener.url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect(value(await response.text(), "dso_docker_event_stream_reconnects_total")).toBe(1);
    expect((await fetch(listener.url.replace("/metrics", "/"))).status).toBe(404);
    expect((await fetch(listener.url, { method: "POST" })).status).toBe(405);
  });

  test("a port in use is a clear error", () => {
    const m = new Metrics({ processMetrics: false });
    listener = startMetricsListener(m, "127.0.0.1:0");
    expect(() => startMetricsListener(m, `127.0.0.1:${listener!.port}`)).toThrow(/agent.metrics.listen: cannot listen on 127.0.0.1:\d+/);
  });
});
