// Resolves `telemetry.traces` plus the standard OTEL_* environment variables into one settings
// object. Pure functions: no SDK here, so `core/telemetry/tracing.ts` can decide "tracing off" without
// loading anything.
//
// Precedence (documented for operators): the config file wins over the environment, and the
// signal-specific variable (OTEL_EXPORTER_OTLP_TRACES_*) wins over the generic one (OTEL_EXPORTER_OTLP_*).

export type TraceProtocol = "http/protobuf" | "http/json";
export type PropagatorName = "tracecontext" | "baggage" | "b3" | "b3multi";

/** The `telemetry` section of fulcrum.yaml. */
export interface TelemetryConfig {
  traces?: {
    /** Set false to turn tracing off even when OTEL_* variables are set. @default true when the section exists */
    enabled?: boolean;
    /** Full OTLP/HTTP traces URL; a bare origin gets `/v1/traces` appended. @default "http://localhost:4318/v1/traces" */
    endpoint?: string;
    /** @default "http/protobuf" */
    protocol?: TraceProtocol;
    /** Extra HTTP headers on every export (collector auth). Merged over OTEL_EXPORTER_OTLP_HEADERS. */
    headers?: Record<string, string>;
    /** Parent-based TraceIdRatio sampling; 0 exports nothing, 1 everything. @default 1 */
    sample_ratio?: number;
    /** @default ["tracecontext", "baggage"] */
    propagators?: PropagatorName[];
    /** Spans waiting for export; beyond it spans are dropped and counted. @default 8192 */
    max_queue_size?: number;
    /** @default 512 */
    max_export_batch_size?: number;
    /** Milliseconds between two exports. @default 1000 */
    scheduled_delay?: number;
    /** Milliseconds one export may take before it is abandoned. @default 10000 */
    export_timeout?: number;
    /** service.name; OTEL_SERVICE_NAME overrides the default only. @default "fulcrum" */
    service_name?: string;
  };
}

export interface ResolvedTraces {
  url: string;
  protocol: TraceProtocol;
  headers: Record<string, string>;
  sampleRatio: number;
  propagators: PropagatorName[];
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  exportTimeoutMs: number;
  serviceName: string;
  /** Methods named as sent; any other is `_OTHER` (OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS). */
  knownMethods: ReadonlySet<string>;
}

/** The HTTP semantic conventions' known methods: RFC 9110's and PATCH (RFC 5789). */
export const DEFAULT_KNOWN_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

/**
 * `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`: a comma-separated, case-sensitive list that replaces
 * the default one whole, as the conventions require of an instrumentation that could otherwise
 * turn a valid method (PURGE, PROPFIND…) into `_OTHER`.
 */
export function knownMethods(raw: string | undefined): ReadonlySet<string> {
  if (!nonEmpty(raw)) return DEFAULT_KNOWN_METHODS;
  return new Set(raw!.split(",").map((m) => m.trim()).filter((m) => m !== ""));
}

export type Env = Record<string, string | undefined>;

const PROTOCOLS: readonly string[] = ["http/protobuf", "http/json"];
const PROPAGATORS: readonly string[] = ["tracecontext", "baggage", "b3", "b3multi"];

/** Returns undefined when tracing is off: no `telemetry.traces` and no OTLP endpoint in the environment. */
export function resolveTraces(config: TelemetryConfig | undefined, env: Env): ResolvedTraces | undefined {
  const t = config?.traces;
  if (t?.enabled === false) return undefined;
  if (isTrue(env.OTEL_SDK_DISABLED) || env.OTEL_TRACES_EXPORTER?.trim() === "none") return undefined;
  const envSignalUrl = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  const envBaseUrl = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (!t && !envSignalUrl && !envBaseUrl) return undefined;

  let url: string;
  if (t?.endpoint) url = withTracesPath(t.endpoint, "telemetry.traces.endpoint");
  else if (envSignalUrl) url = envSignalUrl; // the spec says: used as is
  else if (envBaseUrl) url = envBaseUrl.replace(/\/+$/, "") + "/v1/traces";
  else url = "http://localhost:4318/v1/traces";

  const protocol = t?.protocol ?? nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ??
    nonEmpty(env.OTEL_EXPORTER_OTLP_PROTOCOL) ?? "http/protobuf";
  if (!PROTOCOLS.includes(protocol)) {
    throw new RangeError(`telemetry.traces.protocol must be one of ${PROTOCOLS.join(", ")}, got "${protocol}"`);
  }

  const headers = {
    ...parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS),
    ...t?.headers,
  };

  const sampleRatio = t?.sample_ratio ?? 1;
  if (typeof sampleRatio !== "number" || !(sampleRatio >= 0 && sampleRatio <= 1)) {
    throw new RangeError(`telemetry.traces.sample_ratio must be a number from 0 to 1, got ${String(sampleRatio)}`);
  }

  const propagators = t?.propagators ?? propagatorsFromEnv(env.OTEL_PROPAGATORS) ?? ["tracecontext", "baggage"];
  for (const p of propagators) {
    if (!PROPAGATORS.includes(p)) {
      throw new RangeError(`telemetry.traces.propagators: unknown "${p}", expected one of ${PROPAGATORS.join(", ")}`);
    }
  }

  const maxQueueSize = positiveInt(t?.max_queue_size, 8192, "max_queue_size");
  const maxExportBatchSize = positiveInt(t?.max_export_batch_size, 512, "max_export_batch_size");
  if (maxExportBatchSize > maxQueueSize) {
    throw new RangeError(
      `telemetry.traces.max_export_batch_size (${maxExportBatchSize}) must not exceed max_queue_size (${maxQueueSize})`,
    );
  }
  const serviceName = nonEmpty(env.OTEL_SERVICE_NAME) && !t?.service_name ? env.OTEL_SERVICE_NAME!.trim() : t?.service_name ?? "fulcrum";

  return {
    url,
    protocol: protocol as TraceProtocol,
    headers,
    sampleRatio,
    propagators,
    maxQueueSize,
    maxExportBatchSize,
    scheduledDelayMs: positiveInt(t?.scheduled_delay, 1000, "scheduled_delay"),
    exportTimeoutMs: positiveInt(t?.export_timeout, 10_000, "export_timeout"),
    serviceName,
    knownMethods: knownMethods(env.OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS),
  };
}

/** W3C-baggage-style `k=v,k2=v2` with percent-encoded values, as the OTel spec defines for *_HEADERS. */
export function parseHeaders(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const part of raw.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!key) continue;
    try {
      out[key] = decodeURIComponent(value);
    } catch {
      out[key] = value;
    }
  }
  return out;
}

function withTracesPath(endpoint: string, where: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch (cause) {
    throw new RangeError(`${where} must be an http(s) URL, got "${endpoint}"`, { cause });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new RangeError(`${where} must be an http(s) URL, got "${endpoint}"`);
  }
  // Operators often write just the collector's origin; the OTLP/HTTP traces path is fixed.
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/traces";
  return u.href;
}

function propagatorsFromEnv(raw: string | undefined): PropagatorName[] | undefined {
  if (!nonEmpty(raw)) return undefined;
  // Unknown names (xray, jaeger, none, ...) are ignored rather than fatal: the env is shared with other tools.
  return raw!.split(",").map((s) => s.trim()).filter((s): s is PropagatorName => PROPAGATORS.includes(s));
}

function positiveInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v <= 0) {
    throw new RangeError(`telemetry.traces.${name} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s !== undefined && s.trim() !== "" ? s.trim() : undefined;
}

function isTrue(s: string | undefined): boolean {
  return s?.trim().toLowerCase() === "true";
}
