/**
 * Metric families whose series are plain numbers in children cached per label set: the hot path
 * makes one addition, no label object, no hashing; prom-client reads them at scrape time
 * (through a `collect()` hook, or a registered metric's `get()`).
 */
import type { Metric } from "prom-client";
import Counter from "prom-client/lib/counter.js";
import type Registry from "prom-client/lib/registry.js";

/** One counter series: `inc()` is a single addition. Cache it; do not look it up per request. */
export interface CounterChild {
  inc(n?: number): void;
}

class Child implements CounterChild {
  value = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(n = 1): void {
    this.value += n;
  }
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i] ?? "";
  return labels;
}

function forgetIn(children: Map<string, { labels: Record<string, string> }>, pool: string, backend: string): boolean {
  let any = false;
  for (const [k, c] of children) {
    if (c.labels.pool === pool && c.labels.backend === backend) any = children.delete(k);
  }
  return any;
}

/** A counter family whose children are cached plain numbers, exported through prom-client. */
export class FastCounter {
  readonly #children = new Map<string, Child>();

  /** `beforeCollect` runs first at each scrape (Metrics' pruning of backends gone for good). */
  constructor(registry: Registry, name: string, help: string, readonly labelNames: readonly string[] = [], beforeCollect?: () => void) {
    const children = this.#children;
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        beforeCollect?.();
        this.reset();
        for (const c of children.values()) this.inc(c.labels, c.value);
      },
    });
  }

  /** The series for these label values (in `labelNames` order), created on first use. */
  child(...values: string[]): CounterChild {
    const key = values.join("\u0001");
    let c = this.#children.get(key);
    if (!c) this.#children.set(key, c = new Child(labelsOf(this.labelNames, values)));
    return c;
  }

  /** Drop the series of a backend that left its pool for good; whether there were any. */
  forget(pool: string, backend: string): boolean {
    return forgetIn(this.#children, pool, backend);
  }

  /** Sum over all series (tests, and counters read back). */
  total(): number {
    let n = 0;
    for (const c of this.#children.values()) n += c.value;
    return n;
  }
}

/** One histogram series: counts per bucket in a typed array. */
export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram family with cached children. prom-client's own Histogram hashes its labels and
 * allocates on every observe (~1 µs); this one is a loop over the bounds. It is registered with
 * prom-client as a metric whose `get()` returns the standard bucket/sum/count values.
 */
export class FastHistogram {
  readonly #children = new Map<string, HistogramChild>();

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly bounds: readonly number[],
    beforeCollect?: () => void,
  ) {
    const values = () => (beforeCollect?.(), this.#values());
    registry.registerMetric({
      name,
      help,
      type: "histogram",
      aggregator: "sum",
      get: async () => ({ name, help, type: "histogram", aggregator: "sum", values: values() }),
    } as unknown as Metric);
  }

  child(...values: string[]): HistogramChild {
    const key = values.join("\u0001");
    let c = this.#children.get(key);
    if (!c) this.#children.set(key, c = new HistogramChild(labelsOf(this.labelNames, values), this.bounds));
    return c;
  }

  /** As {@link FastCounter.forget}. */
  forget(pool: string, backend: string): boolean {
    return forgetIn(this.#children, pool, backend);
  }

  #values() {
    const out: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const c of this.#children.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += c.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: this.bounds[i]! }, value: acc });
      }
      out.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: "+Inf" }, value: c.count });
      out.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
      out.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
    }
    return out;
  }
}
