/**
 * Prometheus metrics. prom-client owns the registry and the text exposition; the hot path never
 * calls it. Per-request updates go to plain numbers in children cached per label set (one
 * addition, no label object, no hashing), and prom-client reads them at scrape time through its
 * `collect()` hooks. State that already lives elsewhere (backend health, circuit, in-flight) is
 * read at scrape time only, so it costs nothing per request.
 */
import type { Aggregator, MetricObjectWithValues, MetricValue } from "prom-client";
// File by file: the package's index also loads what is never used here (types/prom-client.d.ts).
// The process metrics (prom-client/lib/defaultMetrics.js) and the workers' aggregation
// (prom-client/lib/cluster.js) are loaded when first read: see createMetrics.
import Counter from "prom-client/lib/counter.js";
import Gauge from "prom-client/lib/gauge.js";
import Registry from "prom-client/lib/registry.js";
import type { Pool } from "../pool/pool.ts";
import { type CounterChild, FastCounter, FastHistogram } from "./fast-metrics.ts";

export { type CounterChild, FastCounter, FastHistogram, HistogramChild } from "./fast-metrics.ts";

/** Seconds; from 1 ms to 30 s, for request and upstream latency. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the metrics read from the running gateway at scrape time. */
export interface MetricsSource {
  pools(): Iterable<Pool>;
  /** Requests being served now (including bodies still streaming). */
  inflight(): number;
  /** Spans dropped by the trace exporter (queue full or export failed). */
  droppedSpans(): number;
}

/**
 * The counters other modules increment. A `GatewayMetrics` is passed to the gateway in
 * `GatewayDeps.metrics`; take a child once (per route, per plugin) and call `inc()` per event.
 */
export interface GatewayMetrics {
  /** `fulcrum_rate_limited_total{route}`: requests answered 429 by rate limiting. */
  readonly rateLimited: { child(route: string): CounterChild };
  /** `fulcrum_plugin_errors_total{plugin}`: a plugin threw (the request fell back or got 502). */
  readonly pluginErrors: { child(plugin: string): CounterChild };
  /** `fulcrum_log_records_dropped_total`: log records lost by a non-blocking sink. */
  readonly logRecordsDropped: CounterChild;
  /** `fulcrum_store_errors_total{store,reason}`: requests a store could not decide (its `on_error` did). */
  readonly storeErrors: { child(store: string, reason: string): CounterChild };
}

export interface Metrics extends GatewayMetrics {
  readonly registry: Registry;
  /** `fulcrum_requests_total{pool,backend,method,status_class}`. */
  readonly requests: FastCounter;
  /** `fulcrum_request_duration_seconds{pool}`: from the request's arrival to the end of its response body. */
  readonly requestDuration: FastHistogram;
  /** `fulcrum_upstream_duration_seconds{pool,backend}`: per attempt, until the response headers (or the failure). */
  readonly upstreamDuration: FastHistogram;
  /** `fulcrum_upstream_attempts_total{pool,backend,outcome}`: outcome is a status class or connect/reset/timeout. */
  readonly attempts: FastCounter;
  /** `fulcrum_retries_total{pool,reason}`. */
  readonly retries: FastCounter;
  /** Where gauges read the live state from; set when the server is up (and again after a reload). */
  source: MetricsSource | undefined;
  /**
   * Backend `id` left `pool` for good: its per-backend series are dropped at the scrapes of the
   * next {@link GONE_MS} unless the live pools have that id again (a late request may have
   * counted after the first drop; a returning backend keeps counting).
   */
  backendGone(pool: string, id: string): void;
  /** Bumped when series were dropped: cached children (core/telemetry/observer.ts) are looked up again. */
  readonly generation: number;
  /** With workers: each worker's `registry.getMetricsAsJSON()`; render() aggregates them with this registry's. */
  remote: (() => Promise<MetricsJson[]>) | undefined;
  /** The registry to read: this process's, or with workers one aggregated over all of them. */
  collect(): Promise<Registry>;
  /** This process's metrics, process metrics included (read them here, not from `registry` directly). */
  json(): Promise<MetricsJson>;
  /** The exposition text and its content type. */
  render(): Promise<{ text: string; contentType: string }>;
}

/** One process's metrics as `Registry.getMetricsAsJSON()` returns them (sent over IPC). */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** How long the series of a backend gone for good are dropped at each scrape (a last request may end late). */
const GONE_MS = 10 * 60_000;

const PER_WORKER_ONLY = new Set(["fulcrum_backend_circuit_state"]);
const GAUGES_NAMED_LIKE_COUNTERS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/**
 * Build the metrics registry. The process metrics (CPU, memory, event-loop lag, GC) are added at
 * the first read (a scrape, an export, the primary asking a worker): loading and registering them
 * is ~40 ms of CPU from source (~15% of start-up) and a few MiB, which a process that is never
 * scraped does not pay. Their event-loop and GC series count from that first read on.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  let processMetrics: Promise<void> | undefined;
  const withProcessMetrics = () =>
    processMetrics ??= import("prom-client/lib/defaultMetrics.js").then(({ default: collectDefaultMetrics }) => {
      try {
        collectDefaultMetrics({ register: registry });
      } catch {
        // A runtime without some node:process/perf_hooks API: the Fulcrum metrics still work.
      }
      // prom-client also names three gauges `*_total`, which the exposition format keeps for
      // counters (`promtool check metrics` rejects them); the per-type gauges without the suffix
      // hold the same counts (their sum).
      for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(name);
    });
  const gone = new Map<string, { pool: string; id: string; since: number }>();
  let generation = 0;
  const prune = () => {
    if (gone.size === 0) return;
    const live = new Set<string>();
    for (const p of m.source?.pools() ?? []) for (const b of p.backends) live.add(`${p.name}\u0001${b.id}`);
    const now = Date.now();
    for (const [k, g] of gone) {
      if (live.has(k) || now - g.since > GONE_MS) gone.delete(k);
      else if ([m.requests, m.attempts, m.upstreamDuration].map((f) => f.forget(g.pool, g.id)).includes(true)) generation++;
    }
  };
  const m: Metrics = {
    registry,
    source: undefined,
    backendGone(pool, id) {
      gone.set(`${pool}\u0001${id}`, { pool, id, since: Date.now() });
    },
    get generation() {
      return generation;
    },
    requests: new FastCounter(registry, "fulcrum_requests_total", "Requests served, by pool, final backend, method and status class.", [
      "pool",
      "backend",
      "method",
      "status_class",
    ], prune),
    requestDuration: new FastHistogram(
      registry,
      "fulcrum_request_duration_seconds",
      "Time from a request's arrival to the end of its response body.",
      ["pool"],
      LATENCY_BUCKETS,
    ),
    upstreamDuration: new FastHistogram(
      registry,
      "fulcrum_upstream_duration_seconds",
      "Time from sending an upstream attempt to its response headers or failure.",
      ["pool", "backend"],
      LATENCY_BUCKETS,
      prune,
    ),
    attempts: new FastCounter(
      registry,
      "fulcrum_upstream_attempts_total",
      "Upstream attempts by outcome: a status class, or connect, reset, timeout.",
      ["pool", "backend", "outcome"],
      prune,
    ),
    retries: new FastCounter(registry, "fulcrum_retries_total", "Retries, by pool and the failure that caused them.", ["pool", "reason"]),
    rateLimited: new FastCounter(registry, "fulcrum_rate_limited_total", "Requests answered 429 by rate limiting.", ["route"]),
    pluginErrors: new FastCounter(
      registry,
      "fulcrum_plugin_errors_total",
      "Exceptions thrown by plugins (caught; the proxy kept serving).",
      ["plugin"],
    ),
    storeErrors: new FastCounter(
      registry,
      "fulcrum_store_errors_total",
      "Requests a shared store (Redis) could not decide in time, by store and reason (unavailable, timeout, error); on_error decided them.",
      ["store", "reason"],
    ),
    logRecordsDropped: new FastCounter(registry, "fulcrum_log_records_dropped_total", "Log records lost by a non-blocking log sink.")
      .child(),
    remote: undefined,
    async json() {
      await withProcessMetrics();
      return await registry.getMetricsAsJSON();
    },
    async collect() {
      await withProcessMetrics();
      if (!m.remote) return registry;
      // The primary serves no traffic: its circuit states (all closed) would only add noise.
      const own = (await registry.getMetricsAsJSON()).filter((x) => !PER_WORKER_ONLY.has(x.name));
      const [remote, { default: AggregatorRegistry }] = await Promise.all([m.remote(), import("prom-client/lib/cluster.js")]);
      // JSON (the IPC encoding) turns NaN into null; put it back so the text stays valid.
      for (const metrics of remote)
        for (const x of metrics) for (const v of (x as { values?: { value: unknown }[] }).values ?? []) if (v.value === null) v.value = NaN;
      return AggregatorRegistry.aggregate([own, ...remote] as MetricObjectWithValues<MetricValue<string>>[][]);
    },
    async render() {
      return { text: await (await m.collect()).metrics(), contentType: registry.contentType };
    },
  };
  registerStateGauges(m);
  return m;
}

function registerStateGauges(m: Metrics): void {
  const registers = [m.registry];
  const labelNames = ["pool", "backend"];
  // Each gauge is refilled from the live pools at scrape time.
  // `aggregator`: how the primary combines the workers' series (README "Multi-core").
  const perBackend = (name: string, help: string, aggregator: Aggregator, value: (p: Pool, b: Pool["backends"][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      aggregator,
      collect() {
        this.reset();
        for (const p of m.source?.pools() ?? []) for (const b of p.backends) this.set({ pool: p.name, backend: b.id }, value(p, b));
      },
    });
  perBackend(
    "fulcrum_backend_up",
    "1 when the backend is healthy (active checks pass and not ejected), else 0.",
    "min",
    (_p, b) => (b.healthy ? 1 : 0),
  );
  perBackend(
    "fulcrum_backend_available",
    "1 when strategies may pick the backend (healthy, circuit allows, not drained).",
    "min",
    (_p, b) => (b.isAvailable() ? 1 : 0),
  );
  perBackend("fulcrum_backend_draining", "1 while an operator has drained the backend.", "max", (_p, b) => (b.draining ? 1 : 0));
  perBackend("fulcrum_backend_weight", "The backend's current weight.", "max", (_p, b) => b.weight);
  perBackend("fulcrum_backend_in_flight", "Upstream requests in flight to the backend.", "sum", (_p, b) => b.inflight);
  new Gauge({
    name: "fulcrum_backend_circuit_state",
    help:
      "1 for the backend's current circuit state (closed, open, half-open), 0 for the others; with workers, how many are in each state.",
    labelNames: ["pool", "backend", "state"],
    registers,
    collect() {
      this.reset();
      for (const p of m.source?.pools() ?? []) {
        for (const b of p.backends) {
          for (const s of ["closed", "open", "half-open"]) this.set({ pool: p.name, backend: b.id, state: s }, b.circuit === s ? 1 : 0);
        }
      }
    },
  });
  new Counter({
    name: "fulcrum_health_checks_total",
    help: "Active health-check probes, by result (ok or fail).",
    labelNames: ["pool", "backend", "result"],
    registers,
    collect() {
      this.reset();
      for (const p of m.source?.pools() ?? []) {
        if (!p.health) continue;
        for (const b of p.backends) {
          this.inc({ pool: p.name, backend: b.id, result: "ok" }, b.health.passed);
          this.inc({ pool: p.name, backend: b.id, result: "fail" }, b.health.failed);
        }
      }
    },
  });
  new Counter({
    name: "fulcrum_discovery_updates_total",
    help: "Backend lists from a pool's discovery, by result: applied, unchanged, or kept the last good list (empty, invalid, error).",
    labelNames: ["pool", "result"],
    registers,
    collect() {
      this.reset();
      for (const p of m.source?.pools() ?? []) {
        const counts = p.discovery?.counts;
        if (counts) { for (const [result, n] of Object.entries(counts)) this.inc({ pool: p.name, result }, n); }
      }
    },
  });
  new Gauge({
    name: "fulcrum_requests_in_flight",
    help: "Requests being served now, including response bodies still streaming.",
    registers,
    collect() {
      this.set(m.source?.inflight() ?? 0);
    },
  });
  new Counter({
    name: "fulcrum_spans_dropped_total",
    help: "Trace spans lost: the export queue was full or the export failed.",
    registers,
    collect() {
      this.reset();
      this.inc(m.source?.droppedSpans() ?? 0);
    },
  });
}
