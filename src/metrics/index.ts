/** Prometheus metrics of the agent (docs/metrics.md). */
export { Metrics, outcomeOf, DELIVERY_MODES, PROVIDER_OPERATIONS, type Outcome, type ProviderOperation } from "./registry.ts";
export { METRICS_PATH, metricsResponse, startMetricsListener, type MetricsListener } from "./server.ts";
