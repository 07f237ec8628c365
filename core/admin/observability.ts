/**
 * Wires tracing, metrics and the admin API around a server, in the order an operator expects:
 * nothing listens until the config and plugins are valid (a bad one never half-starts); then
 * the admin listener (/ready 503), then the proxy listener, then ready; on shutdown, /ready 503
 * at once, and pending spans flushed at the end.
 */
import type { Config } from "../config/schema.ts";
import type { Logging } from "../telemetry/log.ts";
import { createMetrics, type Metrics } from "../telemetry/metrics.ts";
import { createObserver, type Observer } from "../telemetry/observer.ts";
import { startAdmin, type AdminListener, type AdminState, type AdminTarget } from "./admin.ts";
import { createTelemetry, type Telemetry } from "../telemetry/tracing.ts";
import { startMetricsExport, type MetricsExporter } from "../telemetry/metrics-otlp.ts";
import { hostname } from "node:os";
import type { Runtime } from "../runtime/types.ts";
import { registerTlsMetrics } from "../tls/metrics.ts";

/** Environment variable that supplies the admin token when `admin.token` is not set. */
export const ADMIN_TOKEN_ENV = "FULCRUM_ADMIN_TOKEN";

export interface Observability {
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
  const telemetry = await createTelemetry(config.telemetry, {
    serviceVersion: o.serviceVersion,
    env,
    upstreamClient: runtime.upstreamClient,
    logger: { warn: (m, f) => tlog.warning(m, f ?? {}), error: (m, f) => tlog.error(m, f ?? {}) },
  });
  const metrics = config.admin.enabled && config.admin.metrics ? createMetrics() : undefined;
  const state: AdminState = { ready: false, draining: false };
  let target: (AdminTarget & { gateway: { inflight(): number } }) | undefined;
  let admin: AdminListener | undefined;
  let exporter: MetricsExporter | undefined;
  if (telemetry.enabled)
    log.info("tracing on", { endpoint: config.telemetry?.traces?.endpoint ?? "from OTEL_EXPORTER_OTLP_* or the default" });
  let closing: Promise<void> | undefined;

  return {
    telemetry,
    metrics,
    observer: createObserver(telemetry, metrics),
    get admin() {
      return admin;
    },
    state,
    async listen() {
      try {
        admin = await startAdmin(runtime, {
          config,
          metrics,
          token: config.admin.token ?? (o.env(ADMIN_TOKEN_ENV) || undefined),
          state,
          target: () => target,
          logger: log.getChild("admin"),
        });
      } catch (e) {
        await telemetry.shutdown(100);
        throw e;
      }
      if (admin) log.info("admin API listening", { url: admin.url, metrics: metrics !== undefined });
      const exportTo = config.telemetry?.metrics;
      if (exportTo && metrics) {
        exporter = startMetricsExport(async () => (await metrics.collect()).getMetricsAsJSON(), exportTo, {
          "service.name": config.telemetry?.traces?.service_name ?? o.env("OTEL_SERVICE_NAME") ?? "fulcrum",
          "service.version": o.serviceVersion,
          "host.name": hostname(),
        }, { warn: (m, p) => tlog.warning(m, p ?? {}) });
        log.info("metrics export on", { endpoint: exportTo.endpoint, interval_ms: exportTo.interval });
      } else if (exportTo) {
        log.warning("telemetry.metrics is set but metrics are off (admin.metrics: false or admin: false): nothing is exported");
      }
    },
    attach(server) {
      target = server;
      if (metrics) registerTlsMetrics(metrics.registry, () => target?.tls);
      if (metrics) {
        metrics.source = {
          pools: () => target!.gateway.pools.values(),
          inflight: () => target!.gateway.inflight(),
          droppedSpans: () => telemetry.droppedSpans(),
        };
      }
      state.ready = true;
    },
    draining() {
      state.draining = true;
    },
    close() {
      closing ??= (async () => {
        state.draining = true;
        // Last export first: it reads the metrics the admin listener also serves.
        await Promise.all([telemetry.shutdown(o.flushTimeoutMs ?? 5000), exporter?.stop()]);
        await admin?.close();
      })();
      return closing;
    },
  };
}
