/**
 * Wires tracing, metrics and the admin API around a server, in the order an operator expects:
 * nothing listens until the config and plugins are valid (a bad one never half-starts); then
 * the admin listener (/ready 503), then the proxy listener, then ready; on shutdown, /ready 503
 * at once, and pending spans flushed at the end. A reload re-wires them (`stage`): the admin
 * token and metrics switch, and tracing is rebuilt for the new gateway while requests in flight
 * finish with the tracer they started with.
 */
import type { Config } from "../config/schema.ts";
import { ADMIN_TOKEN_ENV, adminToken, isLoopback } from "../config/exposure.ts";
import type { Logging } from "../telemetry/log.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { createObserver, type Observer } from "../telemetry/observer.ts";
import type { AdminOptions, AdminState, AdminTarget } from "./admin.ts";
import type { AdminListener } from "./listen.ts";
import { createTelemetry, type Telemetry } from "../telemetry/tracing.ts";
import type { MetricsExporter } from "../telemetry/metrics-otlp.ts";
import type { StagedObservability } from "../proxy/reload.ts";
import type { Gateway } from "../proxy/gateway.ts";
import { restoreState, saveState, stateFilePath } from "./state-file.ts";
import { hostname } from "node:os";
import type { Runtime } from "../runtime/types.ts";

export { ADMIN_TOKEN_ENV };

// Loaded when a config uses them: metrics (prom-client) with admin.metrics, the admin API (Hono)
// in the process that listens for it, the OTLP metrics export with telemetry.metrics. A worker
// has no admin listener; a config with `admin: false` loads neither prom-client nor the admin API.
let metricsModules: Promise<[typeof import("../telemetry/metrics.ts"), typeof import("../tls/metrics.ts")]> | undefined;
const loadMetrics = () => (metricsModules ??= Promise.all([import("../telemetry/metrics.ts"), import("../tls/metrics.ts")]));

export interface Observability {
  /** The tracing in effect (a reload may replace it). */
  readonly telemetry: Telemetry;
  /** Undefined when `admin.metrics` is false or the admin API is off. */
  readonly metrics: Metrics | undefined;
  /** Pass to the server as `GatewayDeps.observer`; undefined when tracing and metrics are off. */
  readonly observer: Observer | undefined;
  readonly admin: AdminListener | undefined;
  readonly state: AdminState;
  /** Start the admin listener: call once the config and plugins have been validated. */
  listen(): Promise<void>;
  /** The server is up: /ready turns 200 and metrics read its pools. */
  attach(server: AdminTarget & { gateway: { inflight(): number } }): void;
  /** Pass to the server as `ServerDeps.stage`: tracing, metrics and admin settings for a reloaded config. */
  stage(config: Config): Promise<StagedObservability>;
  /**
   * This process owns the operator state (a single process, or the primary): apply `state_file`
   * to `gateway` now, and save it after every admin change and reload from then on.
   */
  restore(gateway: Gateway): void;
  /** Run `extend` on the metrics now and on metrics a reload turns on (the primary adds its own series). */
  extendMetrics(extend: (m: Metrics) => void): void;
  /** Shutdown has begun: /ready answers 503. */
  draining(): void;
  /** Flush pending spans (bounded) and close the admin listener. */
  close(): Promise<void>;
}

export interface ObservabilityOptions {
  logging: Logging;
  serviceVersion: string;
  /** Environment for OTEL_* and FULCRUM_ADMIN_TOKEN. */
  env: (name: string) => string | undefined;
  /** Bound on the final span flush at shutdown. @default 5000 */
  flushTimeoutMs?: number;
}

export async function startObservability(runtime: Runtime, config: Config, o: ObservabilityOptions): Promise<Observability> {
  const log = o.logging.logger;
  const tlog = log.getChild("telemetry");
  const env = new Proxy({} as Record<string, string | undefined>, { get: (_t, k) => (typeof k === "string" ? o.env(k) : undefined) });
  const tracingFor = (c: Config) =>
    createTelemetry(c.telemetry, {
      serviceVersion: o.serviceVersion,
      env,
      upstreamClient: runtime.upstreamClient,
      logger: { warn: (m, f) => tlog.warning(m, f ?? {}), error: (m, f) => tlog.error(m, f ?? {}) },
    });
  const wantsMetrics = (c: Config) => c.admin.enabled && c.admin.metrics;
  let current = config;
  let telemetry = await tracingFor(config);
  const createMetrics = async () => (await loadMetrics())[0].createMetrics();
  let metrics = wantsMetrics(config) ? await createMetrics() : undefined;
  // Set while metrics are on (they were loaded for them).
  let registerTlsMetrics: typeof import("../tls/metrics.ts").registerTlsMetrics | undefined = metrics
    ? (await loadMetrics())[1].registerTlsMetrics
    : undefined;
  let metricsExport: typeof import("../telemetry/metrics-otlp.ts") | undefined;
  const loadExport = async (c: Config) => {
    if (c.telemetry?.metrics && c.admin.enabled && c.admin.metrics) metricsExport ??= await import("../telemetry/metrics-otlp.ts");
  };
  let observer = createObserver(telemetry, metrics);
  const state: AdminState = { ready: false, draining: false };
  let target: (AdminTarget & { gateway: { inflight(): number } }) | undefined;
  let admin: AdminListener | undefined;
  let exporter: MetricsExporter | undefined;
  /** Set by restore(): this process keeps the state file (not a worker). */
  let ownsState = false;
  let stateFile: string | undefined;
  /** Set by listen(): this process exports metrics (not a worker: the primary exports the sum). */
  let exports = false;
  /** Spans dropped by tracers a reload replaced and shut down. */
  let droppedBefore = 0;
  /** Tracers a reload replaced, waiting for their requests to finish: each with its (one) shutdown. */
  const retiring = new Map<Telemetry, () => Promise<void>>();
  const extensions: ((m: Metrics) => void)[] = [];
  const logTracing = (t: Telemetry, c: Config) => {
    if (t.enabled) log.info("tracing on", { endpoint: c.telemetry?.traces?.endpoint ?? "from OTEL_EXPORTER_OTLP_* or the default" });
  };
  logTracing(telemetry, config);
  let closing: Promise<void> | undefined;
  // Read per request by the admin API: a reload changes the token and the metrics in place.
  const adminOptions: AdminOptions = {
    config,
    metrics,
    token: adminToken(config, o.env),
    state,
    target: () => target,
    logger: log.getChild("admin"),
    onOperatorChange: () => save(),
    reopenLogs: () => o.logging.reopen?.(),
  };
  const save = () => {
    if (stateFile && target) saveState(stateFile, target.gateway.pools.values(), log);
  };
  const wire = (m: Metrics) => {
    registerTlsMetrics?.(m.registry, () => target?.tls);
    m.source = {
      pools: () => target?.gateway.pools.values() ?? [],
      inflight: () => target?.gateway.inflight() ?? 0,
      droppedSpans: () => {
        let n = droppedBefore + telemetry.droppedSpans();
        for (const t of retiring.keys()) n += t.droppedSpans();
        return n;
      },
    };
  };
  const startExport = () => {
    const exportTo = current.telemetry?.metrics;
    const m = metrics;
    if (exportTo && m && metricsExport) {
      exporter = metricsExport.startMetricsExport(async () => (await m.collect()).getMetricsAsJSON(), exportTo, {
        "service.name": current.telemetry?.traces?.service_name ?? o.env("OTEL_SERVICE_NAME") ?? "fulcrum",
        "service.version": o.serviceVersion,
        "host.name": hostname(),
      }, { warn: (msg, p) => tlog.warning(msg, p ?? {}) });
      log.info("metrics export on", { endpoint: exportTo.endpoint, interval_ms: exportTo.interval });
    } else if (exportTo) {
      log.warning("telemetry.metrics is set but metrics are off (admin.metrics: false or admin: false): nothing is exported");
    }
  };

  return {
    get telemetry() {
      return telemetry;
    },
    get metrics() {
      return metrics;
    },
    get observer() {
      return observer;
    },
    get admin() {
      return admin;
    },
    state,
    async listen() {
      try {
        admin = config.admin.enabled ? await (await import("./listen.ts")).startAdmin(runtime, adminOptions) : undefined;
      } catch (e) {
        await telemetry.shutdown(100);
        throw e;
      }
      if (admin) log.info("admin API listening", { url: admin.url, metrics: metrics !== undefined });
      const where = config.admin.listen;
      if (admin && where && !isLoopback(where.hostname) && adminOptions.token === undefined) {
        log.warning("admin API on {url} without a token (admin.insecure: true): whoever reaches it can drain backends and reload", {
          url: admin.url,
        });
      }
      exports = true;
      await loadExport(current);
      startExport();
    },
    attach(server) {
      target = server;
      if (metrics) wire(metrics);
      state.ready = true;
    },
    async stage(next) {
      const tracingChanged = JSON.stringify(next.telemetry?.traces) !== JSON.stringify(current.telemetry?.traces);
      const nextTelemetry = tracingChanged ? await tracingFor(next) : telemetry;
      const nextMetrics = wantsMetrics(next) ? (metrics ?? (await createMetrics())) : undefined;
      if (nextMetrics) registerTlsMetrics ??= (await loadMetrics())[1].registerTlsMetrics;
      if (exports) await loadExport(next);
      const nextObserver = nextTelemetry === telemetry && nextMetrics === metrics ? observer : createObserver(nextTelemetry, nextMetrics);
      return {
        observer: nextObserver,
        metrics: nextMetrics,
        commit(previous) {
          const before = { telemetry, metrics, config: current };
          current = next;
          telemetry = nextTelemetry;
          metrics = nextMetrics;
          observer = nextObserver;
          adminOptions.config = next;
          adminOptions.metrics = nextMetrics;
          adminOptions.token = adminToken(next, o.env);
          if (nextMetrics && nextMetrics !== before.metrics) {
            wire(nextMetrics);
            for (const extend of extensions) extend(nextMetrics);
          }
          if (nextTelemetry !== before.telemetry) {
            logTracing(nextTelemetry, next);
            if (!nextTelemetry.enabled && before.telemetry.enabled) log.info("tracing off");
            // Requests in flight on the old gateway end their spans first; then flush and stop.
            const old = before.telemetry;
            let stopping: Promise<void> | undefined;
            const stop = () =>
              stopping ??= old.shutdown(o.flushTimeoutMs ?? 5000).then(() => {
                droppedBefore += old.droppedSpans();
                retiring.delete(old);
              });
            retiring.set(old, stop);
            void previous.then(stop);
          }
          const exportChanged = JSON.stringify(next.telemetry?.metrics) !== JSON.stringify(before.config.telemetry?.metrics);
          if (exports && (exportChanged || nextMetrics !== before.metrics)) {
            const old = exporter;
            exporter = undefined;
            void old?.stop();
            startExport();
          }
          if (ownsState) stateFile = stateFilePath(next, runtime.cwd());
          save();
        },
        abort() {
          if (nextTelemetry !== telemetry) void nextTelemetry.shutdown(100);
        },
      };
    },
    restore(gateway) {
      ownsState = true;
      stateFile = stateFilePath(current, runtime.cwd());
      if (stateFile) restoreState(stateFile, gateway.pools, log);
    },
    extendMetrics(extend) {
      extensions.push(extend);
      if (metrics) extend(metrics);
    },
    draining() {
      state.draining = true;
    },
    close() {
      closing ??= (async () => {
        state.draining = true;
        // Last export first: it reads the metrics the admin listener also serves. Tracers a reload
        // replaced are flushed now too, whether or not their last requests have finished.
        await Promise.all([
          telemetry.shutdown(o.flushTimeoutMs ?? 5000),
          exporter?.stop(),
          ...[...retiring.values()].map((stop) => stop()),
        ]);
        await admin?.close();
      })();
      return closing;
    },
  };
}
