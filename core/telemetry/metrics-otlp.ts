/**
 * Optional OTLP export of the same metrics /metrics serves: every `interval`, the prom-client
 * registry's values are converted to an OTLP `ExportMetricsServiceRequest` (http/json) and POSTed
 * to `telemetry.metrics.endpoint`. Counters become cumulative monotonic sums, gauges gauges,
 * histograms explicit-bucket histograms. A collector that is down or slow never affects requests:
 * each export is bounded by a timeout and failures are logged at most once a minute.
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";

export interface MetricsExportConfig {
  endpoint: string;
  headers: Record<string, string>;
  /** Milliseconds between exports. */
  interval: number;
  /** Milliseconds an export may take before it is abandoned. */
  timeout: number;
}

type AnyMetric = MetricObjectWithValues<MetricValue<string>>;
type Labels = Record<string, string | number>;

interface Logger {
  warn(message: string, props?: Record<string, unknown>): void;
}

type KeyValue = { key: string; value: { stringValue: string } };

function attributes(labels: Record<string, string | number>, skip?: string): KeyValue[] {
  const out: KeyValue[] = [];
  for (const [key, v] of Object.entries(labels)) if (key !== skip) out.push({ key, value: { stringValue: String(v) } });
  return out;
}

const labelKey = (labels: Record<string, string | number>, skip: string) =>
  JSON.stringify(Object.entries(labels).filter(([k]) => k !== skip).sort(([a], [b]) => (a < b ? -1 : 1)));

/** Convert prom-client's JSON to an OTLP/JSON metrics request body. */
export function toOtlp(
  metrics: readonly AnyMetric[],
  resource: Record<string, string>,
  startNs: bigint,
  nowNs: bigint,
): unknown {
  const start = String(startNs);
  const time = String(nowNs);
  const out: unknown[] = [];
  for (const m of metrics) {
    const base = { name: m.name, description: m.help };
    // prom-client types `type` as an enum whose values are these strings.
    const type = String(m.type);
    if (type === "counter" || type === "gauge") {
      const dataPoints = m.values
        .filter((v) => Number.isFinite(v.value))
        .map((v) => ({ attributes: attributes(v.labels as Labels), startTimeUnixNano: start, timeUnixNano: time, asDouble: v.value }));
      out.push(
        type === "counter"
          ? { ...base, sum: { dataPoints, aggregationTemporality: 2, isMonotonic: true } }
          : { ...base, gauge: { dataPoints } },
      );
    } else if (type === "histogram") {
      // prom-client lists cumulative `_bucket{le}` rows, then `_sum` and `_count`, per label set.
      const series = new Map<string, { labels: Labels; bounds: number[]; cumulative: number[]; sum: number; count: number }>();
      for (const v of m.values) {
        const labels = v.labels as Labels;
        const key = labelKey(labels, "le");
        let s = series.get(key);
        if (!s) series.set(key, s = { labels, bounds: [], cumulative: [], sum: 0, count: 0 });
        const name = (v as { metricName?: string }).metricName ?? "";
        if (name.endsWith("_bucket")) {
          if (labels.le !== "+Inf") {
            s.bounds.push(Number(labels.le));
            s.cumulative.push(v.value);
          }
        } else if (name.endsWith("_sum")) s.sum = v.value;
        else if (name.endsWith("_count")) s.count = v.value;
      }
      const dataPoints = [...series.values()].map((s) => {
        const bucketCounts: string[] = [];
        let prev = 0;
        for (const c of s.cumulative) {
          bucketCounts.push(String(c - prev));
          prev = c;
        }
        bucketCounts.push(String(s.count - prev));
        return {
          attributes: attributes(s.labels, "le"),
          startTimeUnixNano: start,
          timeUnixNano: time,
          count: String(s.count),
          sum: s.sum,
          bucketCounts,
          explicitBounds: s.bounds,
        };
      });
      out.push({ ...base, histogram: { dataPoints, aggregationTemporality: 2 } });
    }
    // Summaries are not produced by Fulcrum; skipped.
  }
  return {
    resourceMetrics: [
      {
        resource: { attributes: attributes(resource) },
        scopeMetrics: [{ scope: { name: "fulcrum" }, metrics: out }],
      },
    ],
  };
}

export interface MetricsExporter {
  /** Export once now (also used at shutdown). Never throws. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** Export `collect()`'s metrics every `config.interval` until stopped. */
export function startMetricsExport(
  collect: () => Promise<AnyMetric[]>,
  config: MetricsExportConfig,
  resource: Record<string, string>,
  log: Logger,
): MetricsExporter {
  const startNs = BigInt(Date.now()) * 1_000_000n;
  let lastWarned = -Infinity;
  let running: Promise<void> | undefined;

  async function exportOnce(): Promise<void> {
    try {
      const body = JSON.stringify(toOtlp(await collect(), resource, startNs, BigInt(Date.now()) * 1_000_000n));
      const r = await fetch(config.endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", ...config.headers },
        body,
        signal: AbortSignal.timeout(config.timeout),
      });
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`collector answered ${r.status}`);
    } catch (e) {
      const now = performance.now();
      if (now - lastWarned > 60_000) {
        lastWarned = now;
        log.warn("metrics export failed", { endpoint: config.endpoint, error: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  const flush = () => (running ??= exportOnce().finally(() => (running = undefined)));
  const timer = setInterval(() => void flush(), config.interval);
  (timer as { unref?: () => void }).unref?.();
  return {
    flush,
    async stop() {
      clearInterval(timer);
      // An export already under way read the metrics before stop(): the last one reads them now.
      await running;
      await exportOnce();
    },
  };
}
