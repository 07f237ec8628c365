/**
 * The request path's observability hooks: the server calls them at request start and end, the
 * proxy at each upstream attempt's start and end. One object joins tracing (core/telemetry/tracing.ts)
 * and metrics (core/telemetry/metrics.ts). With both off there is no observer at all, and the hooks cost
 * one property read. With metrics only, an update is a few additions on cached children.
 */
import type { Attributes, SpanKind } from "@opentelemetry/api";
import type { Backend, Pool } from "../pool/pool.ts";
import type { PluginSpan, PluginTracer } from "../plugins/api.ts";
import { NO_IDS } from "./access-formats.ts";
import type { CounterChild, HistogramChild, Metrics } from "./metrics.ts";
import type { ClientSpanAttrs, RequestHead, SpanHandle, Telemetry } from "./tracing.ts";
import { SPAN_KIND_INTERNAL } from "./types.ts";

/**
 * What the observer reads of a request (and the one field it writes, `span`): the proxy's
 * Exchange (core/proxy/proxy.ts) has these fields, so it is passed as is; declared here so that
 * telemetry imports nothing from the proxy.
 */
export interface ObservedExchange {
  readonly method: string;
  /** The path (no query), appended to the backend's URL for the CLIENT span's url.full. */
  readonly path: string;
  readonly clientIp: string;
  /** "" when no route matched. */
  readonly route: string;
  /** "" when no pool was chosen. */
  readonly pool: string;
  readonly backend: string;
  readonly status: number;
  readonly bytes: number;
  readonly attempts: number;
  readonly retryReason: string | undefined;
  readonly error: string | undefined;
  /** A tunnel (WebSocket) after 101, when it has closed: its bytes from the client and who closed it. */
  readonly tunnel?: { readonly upgrade: string; readonly bytesIn: number; readonly closedBy: string } | undefined;
  /** Path and query sent to the backend when a middleware rewrote them (`url.path` keeps the client's). */
  readonly upstreamPath?: string | undefined;
  /** The request's id, when a middleware (request-id) set one. */
  readonly requestId?: string | undefined;
  /** The request's SERVER span, set by {@link Observer.requestStart}. */
  span: SpanHandle | undefined;
}

/** trace_id and span_id for the access-log line. */
export type TraceIds = { trace_id: string; span_id: string };

/** A traced upstream attempt: its CLIENT span and the backend's state when it started. */
export interface AttemptTrace {
  /** Undefined for an attempt no span records ({@link UNTRACED}). */
  readonly span: SpanHandle | undefined;
  readonly circuit: string;
  readonly ejected: boolean;
}

/**
 * attemptStart's answer when no span records the attempt: an object like a traced attempt's, not
 * undefined. The proxy's compiled code speculated on the always-undefined answer and exited at
 * each sampled request's object (JSC's OSR-exit log: proxyToPool, BadType).
 */
const UNTRACED: AttemptTrace = { span: undefined, circuit: "", ejected: false };

/** The proxy's own parsed request (core/proxy/gateway.ts RawIncoming): headers looked up, `Headers` built only on demand. */
export interface ObservedRequest extends RequestHead {
  /** Sets `map`'s entry for this request's `Headers` object now, or when (if ever) it is built. */
  keyByHeaders<T>(map: WeakMap<Headers, T>, value: T): void;
}

export interface Observer {
  /** Tracing is on: upstream attempts get trace context headers written into their headers. */
  readonly tracing: boolean;
  /** The request was routed (`ex.route` is "" when no route matched). Starts the SERVER span. */
  requestStart(ex: ObservedExchange, request: Request | ObservedRequest): void;
  /**
   * The request is over (body finished or failed), `durationMs` after it started. Ends the SERVER
   * span; returns ids for the access log ({@link NO_IDS} when the request has none).
   */
  requestEnd(ex: ObservedExchange, durationMs: number): TraceIds | undefined;
  /**
   * An upstream attempt starts: starts its CLIENT span and writes its context (traceparent…)
   * into `headers`. `ex.retryReason` says why, for attempt 2 and later.
   */
  attemptStart(
    ex: ObservedExchange,
    pool: Pool,
    backend: Backend,
    attempt: number,
    headers: Record<string, string>,
  ): AttemptTrace | undefined;
  /** The attempt has response headers (`status`), or failed (`status` 0 and `error`). */
  attemptEnd(
    ex: ObservedExchange,
    trace: AttemptTrace | undefined,
    pool: Pool,
    backend: Backend,
    status: number,
    latencyMs: number,
    error?: { kind: string } & Error,
  ): void;
  /** The tracer handed to a plugin through `PluginApi.tracer`. */
  pluginTracer(name: string, version?: string): PluginTracer;
  /** Backend `id` left `pool` for good (discovery removed it, a reload dropped it): its series go. */
  backendGone(pool: string, id: string): void;
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "_OTHER"];
const METHOD_INDEX = new Map(METHODS.map((m, i) => [m, i]));
/** The method's index in METHODS; GET without a lookup. */
const methodIndex = (m: string) => (m === "GET" ? 0 : METHOD_INDEX.get(m) ?? 9);
const OUTCOMES = ["1xx", "2xx", "3xx", "4xx", "5xx", "connect", "reset", "timeout", "aborted"];

/** Cached metric children of one backend (by pool name and backend id, so they survive reloads). */
class BackendSlot {
  /** fulcrum_requests_total children by method index × 6 + status class. */
  readonly requests: (CounterChild | undefined)[] = [];
  readonly outcomes: (CounterChild | undefined)[] = [];
  #upstream: HistogramChild | undefined;
  /** The metrics' generation its children are from: a slot from before series were dropped is made again. */
  readonly gen: number;
  constructor(readonly m: Metrics, readonly pool: string, readonly id: string) {
    this.gen = m.generation;
  }
  /** Created on the first attempt, so "no backend" 503s add no empty series. */
  get upstream(): HistogramChild {
    return (this.#upstream ??= this.m.upstreamDuration.child(this.pool, this.id));
  }
  request(method: number, statusClass: number): CounterChild {
    const i = method * 6 + statusClass;
    return (this.requests[i] ??= this.m.requests.child(this.pool, this.id, METHODS[method]!, statusClass ? `${statusClass}xx` : "other"));
  }
  outcome(i: number): CounterChild {
    return (this.outcomes[i] ??= this.m.attempts.child(this.pool, this.id, OUTCOMES[i]!));
  }
}

class PoolSlot {
  readonly duration: HistogramChild;
  readonly backends = new Map<string, BackendSlot>();
  readonly retries = new Map<string, CounterChild>();
  constructor(readonly m: Metrics, readonly name: string) {
    this.duration = m.requestDuration.child(name);
  }
  backend(id: string): BackendSlot {
    let s = this.backends.get(id);
    if (s === undefined || s.gen !== this.m.generation) this.backends.set(id, s = new BackendSlot(this.m, this.name, id));
    return s;
  }
}

const NOOP_SPAN: PluginSpan = {
  setAttribute() {
    return this;
  },
  addEvent() {
    return this;
  },
  setStatus() {
    return this;
  },
  recordException() {},
  end() {},
  isRecording: () => false,
};

/** The plugin tracer when tracing is off: every span is a shared no-op. */
export const NOOP_PLUGIN_TRACER: PluginTracer = Object.freeze({ startSpan: () => NOOP_SPAN });

/** Build the observer; undefined when neither tracing nor metrics is on (the hooks are then skipped). */
export function createObserver(tel: Telemetry, metrics: Metrics | undefined): Observer | undefined {
  if (!tel.enabled && !metrics) return undefined;
  const tracing = tel.enabled;
  const pools = new Map<string, PoolSlot>();
  // The last pool's slot: most requests go to the pool the one before went to.
  let lastPool: PoolSlot | undefined;
  const poolSlot = (name: string) => {
    if (lastPool !== undefined && lastPool.name === name) return lastPool;
    let s = pools.get(name);
    if (!s) pools.set(name, s = new PoolSlot(metrics!, name));
    return (lastPool = s);
  };
  const noRoute: (CounterChild | undefined)[] = [];
  const backendSlots = new WeakMap<Backend, BackendSlot>();
  const backendSlot = (pool: Pool, b: Backend) => {
    let s = backendSlots.get(b);
    if (s === undefined || s.gen !== metrics!.generation) backendSlots.set(b, s = poolSlot(pool.name).backend(b.id));
    return s;
  };
  // Client-span attributes, one object per backend, mutated per attempt (read synchronously).
  const attrsOf = new WeakMap<Backend, ClientSpanAttrs & { base: string }>();
  // SERVER spans by the request's Headers object: plugins parent their spans with the request
  // (a strategy's RequestInfo and a middleware's c.req.raw share that Headers object).
  const parents = new WeakMap<Headers, SpanHandle>();

  return {
    tracing,
    requestStart(ex, request) {
      if (!tracing) return;
      const span = tel.startServerSpan(request, ex.route, ex.clientIp);
      ex.span = span;
      if (span && span.sampled) {
        if (request instanceof Request) parents.set(request.headers, span);
        else request.keyByHeaders(parents, span);
      }
    },

    requestEnd(ex, durationMs) {
      if (metrics && ex.pool !== "") {
        const ps = poolSlot(ex.pool);
        ps.duration.observe(durationMs / 1000);
        const status = ex.status;
        const cls = status >= 100 && status < 600 ? (status / 100) | 0 : 0;
        ps.backend(ex.backend).request(methodIndex(ex.method), cls).inc();
      } else if (metrics) {
        // No route (404): counted under pool "" so totals still match the requests sent.
        const i = methodIndex(ex.method) * 6 + ((ex.status / 100) | 0);
        (noRoute[i] ??= metrics.requests.child("", "", METHODS[(i / 6) | 0]!, `${i % 6}xx`)).inc();
      }
      const span = ex.span;
      if (span === undefined) return NO_IDS;
      if (span.sampled) {
        const s = span.span;
        if (ex.pool) s.setAttribute("fulcrum.pool", ex.pool);
        if (ex.backend) s.setAttribute("fulcrum.backend", ex.backend);
        s.setAttribute("fulcrum.attempts", ex.attempts);
        if (ex.bytes) s.setAttribute("http.response.body.size", ex.bytes);
        if (ex.retryReason) s.setAttribute("fulcrum.retry_reason", ex.retryReason);
        if (ex.upstreamPath !== undefined) s.setAttribute("fulcrum.upstream.path", ex.upstreamPath);
        if (ex.requestId !== undefined) s.setAttribute("fulcrum.request_id", ex.requestId);
        const t = ex.tunnel;
        if (t !== undefined) {
          s.setAttribute("fulcrum.tunnel.upgrade", t.upgrade);
          s.setAttribute("fulcrum.tunnel.bytes_in", t.bytesIn);
          s.setAttribute("fulcrum.tunnel.closed_by", t.closedBy);
        }
      }
      // Only sampled spans have ids to log: ids() then sees one class of span, never the other.
      const ids = span.sampled ? tel.ids(span)! : NO_IDS;
      tel.endServer(span, ex.status, ex.status >= 500 ? ex.error : undefined);
      return ids;
    },

    attemptStart(ex, pool, backend, attempt, headers) {
      if (metrics && attempt > 1) {
        const reason = ex.retryReason ?? "unknown";
        const ps = poolSlot(pool.name);
        let c = ps.retries.get(reason);
        if (!c) ps.retries.set(reason, c = metrics.retries.child(pool.name, reason));
        c.inc();
      }
      const parent = ex.span;
      if (parent === undefined) return UNTRACED;
      if (!parent.sampled) {
        // Unsampled: the backend still gets a traceparent (sampled flag off) so it agrees.
        tel.inject(parent, headers);
        return UNTRACED;
      }
      let a = attrsOf.get(backend);
      if (!a) {
        const t = backend.target;
        a = {
          pool: pool.name,
          backend: backend.id,
          strategy: pool.strategyName,
          attempt,
          url: "",
          host: t.hostname,
          port: t.port,
          base: backend.url.replace(/\/+$/, ""),
        };
        attrsOf.set(backend, a);
      }
      // A reload may keep the backend and change its pool's strategy.
      a.strategy = pool.strategyName;
      a.attempt = attempt;
      // What is sent upstream: the path and the query (kept by the SERVER span, sampled requests only).
      const query = parent.query;
      const rewritten = ex.upstreamPath;
      a.url = rewritten !== undefined ? a.base + rewritten : query === undefined ? a.base + ex.path : a.base + ex.path + "?" + query;
      a.retryReason = attempt > 1 ? ex.retryReason : undefined;
      const span = tel.startClientSpan(parent, a)!;
      if (backend.circuit !== "closed") span.span.setAttribute("fulcrum.circuit", backend.circuit);
      tel.inject(span, headers);
      return { span, circuit: backend.circuit, ejected: backend.ejectedUntil !== 0 };
    },

    attemptEnd(_ex, trace, pool, backend, status, latencyMs, error) {
      if (metrics) {
        const s = backendSlot(pool, backend);
        s.upstream.observe(latencyMs / 1000);
        let i = 6;
        if (status >= 100 && status < 600) i = ((status / 100) | 0) - 1;
        else if (error !== undefined) {
          const k = OUTCOMES.indexOf(error.kind);
          if (k >= 5) i = k;
        }
        s.outcome(i).inc();
      }
      // Compared by identity: `trace.span === undefined` would be a speculation of its own.
      if (trace === undefined || trace === UNTRACED) return;
      const span = trace.span!;
      // The breaker or passive health may have reacted to this very attempt: say so on its span.
      if (backend.circuit !== trace.circuit) {
        tel.addEvent(span, "fulcrum.circuit_transition", { from: trace.circuit, to: backend.circuit, "fulcrum.backend": backend.id });
      }
      if (!trace.ejected && backend.ejectedUntil !== 0) {
        tel.addEvent(span, "fulcrum.backend_ejected", { "fulcrum.backend": backend.id, "fulcrum.ejections": backend.ejections });
      }
      tel.endClient(span, status, error);
    },

    backendGone(pool, id) {
      metrics?.backendGone(pool, id);
    },

    pluginTracer(name, version) {
      if (!tracing) return NOOP_PLUGIN_TRACER;
      const tracer = tel.tracer(name, version);
      return {
        startSpan(spanName, options) {
          const parent = options?.parent ? parents.get(options.parent.headers) : undefined;
          const opts = {
            kind: SPAN_KIND_INTERNAL as SpanKind,
            ...(options?.attributes ? { attributes: options.attributes as Attributes } : {}),
          };
          return tracer.startSpan(spanName, opts, parent?.ctx ?? tel.rootContext) as unknown as PluginSpan;
        },
      };
    },
  };
}
