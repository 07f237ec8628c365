/**
 * The config schema: one place that says what every key accepts, its default and its error
 * message. `load.ts` turns the issues it reports into `file:line:col` messages. Pools and routes
 * have files of their own (`pool-schema.ts`, `route-schema.ts`); the value types are in `fields.ts`.
 */
import { z } from "zod";
import { acmeSchema, listenSchema } from "./tls.ts";
import { duration, isHttpUrl, listen, positiveInt, ratio, size } from "./fields.ts";
import { poolSchema } from "./pool-schema.ts";
import { routeSchema } from "./route-schema.ts";
import { storesSchema } from "./stores.ts";

export { type Http2Config, TUNNEL_IDLE_DEFAULT } from "./protocols.ts";

/**
 * The fields a JSON access line may have, in the order it writes them: `log.fields` chooses among
 * them (the default line writes all but the last three, each optional one when it applies).
 */
export const ACCESS_FIELDS = [
  "@timestamp",
  "level",
  "message",
  "logger",
  "method",
  "path",
  "status",
  "route",
  "pool",
  "backend",
  "duration_ms",
  "bytes",
  "attempts",
  "client_ip",
  "scheme",
  "retry_reason",
  "error",
  "protocol",
  "upgrade",
  "bytes_in",
  "closed_by",
  "upstream_path",
  "request_id",
  "trace_id",
  "span_id",
  "worker",
  // Not in the default line: only when listed.
  "target",
  "referer",
  "user_agent",
] as const;
export type AccessField = (typeof ACCESS_FIELDS)[number];

const accessField = z
  .string({ error: "must be a field name" })
  .transform((s) => (s === "timestamp" ? "@timestamp" : s))
  .refine((s): s is AccessField => (ACCESS_FIELDS as readonly string[]).includes(s), {
    error: (i) => `unknown access-log field ${JSON.stringify(i.input)} (known: ${ACCESS_FIELDS.join(", ")})`,
  });

const log = z.strictObject(
  {
    level: z.enum(["debug", "info", "warning", "error"], { error: "must be debug, info, warning or error" }).default("info"),
    /** One line per proxied request. */
    access_log: z.boolean({ error: "must be true or false" }).default(true),
    /** Write access-log lines to this file instead of standard output (reopened on SIGUSR1). */
    access_log_file: z.string({ error: "must be a file path" }).optional(),
    /** json (the default), or nginx's combined, or the common log format. */
    access_format: z.enum(["json", "combined", "common"], { error: "must be json, combined or common" }).default("json"),
    /** The JSON access line's fields, in this order; unset: the default line. */
    fields: z.array(accessField, { error: "must be a list of access-log field names" }).min(1, { error: "must name at least one field" })
      .optional(),
  },
  { error: "must be a map with level and access_log" },
).refine((l) => l.fields === undefined || l.access_format === "json", {
  error: "fields chooses the fields of JSON lines: set access_format: json, or remove fields",
  path: ["fields"],
});

const limits = z.strictObject(
  {
    max_request_body: size.default(0),
    client_idle_timeout: duration
      .refine((ms) => ms <= 255_000, { error: "must be at most 255s" })
      .default(60_000),
    /** Longest wait for the next piece of a request body; a client that stalls gets 408. */
    client_body_timeout: duration.refine((ms) => ms > 0, { error: "must be more than 0" }).default(60_000),
  },
  { error: "must be a map with max_request_body, client_idle_timeout and client_body_timeout" },
);

// ---- observability (issue 5) -------------------------------------------------------------
// Trace keys stay optional without defaults: unset ones fall back to OTEL_* variables, then to
// the defaults in core/telemetry/config.ts (documented in config/reference.yaml).
const PROPAGATORS = ["tracecontext", "baggage", "b3", "b3multi"] as const;
const traces = z
  .strictObject(
    {
      enabled: z.boolean({ error: "must be true or false" }).optional(),
      endpoint: z
        .string({ error: "must be an http:// or https:// URL" })
        .refine(isHttpUrl, { error: "must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318" })
        .optional(),
      protocol: z.enum(["http/protobuf", "http/json"], { error: 'must be "http/protobuf" or "http/json"' }).optional(),
      headers: z.record(z.string(), z.coerce.string(), { error: "must be a map of header: value" }).optional(),
      sample_ratio: ratio.optional(),
      propagators: z
        .array(z.enum(PROPAGATORS, { error: `must be one of ${PROPAGATORS.join(", ")}` }), { error: "must be a list of propagators" })
        .optional(),
      max_queue_size: positiveInt().optional(),
      max_export_batch_size: positiveInt().optional(),
      scheduled_delay: duration.optional(),
      export_timeout: duration.optional(),
      service_name: z.string({ error: "must be a string" }).min(1, { error: "must not be empty" }).optional(),
    },
    { error: "must be a map of trace export settings" },
  )
  .refine((t) => (t.max_export_batch_size ?? 512) <= (t.max_queue_size ?? 8192), {
    error: "max_export_batch_size must not exceed max_queue_size",
  });

/** OTLP/JSON export of the same metrics /metrics serves (needs admin.metrics, the default). */
const metricsExport = z.strictObject(
  {
    endpoint: z
      .string({ error: "must be an http:// or https:// URL" })
      .refine(isHttpUrl, { error: "must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318" }),
    headers: z.record(z.string(), z.coerce.string(), { error: "must be a map of header: value" }).default({}),
    interval: duration.default(60_000),
    timeout: duration.default(10_000),
  },
  { error: "must be a map with endpoint, headers, interval and timeout" },
);

const telemetry = z.strictObject(
  { traces: traces.optional(), metrics: metricsExport.optional() },
  { error: "must be a map with traces and/or metrics" },
);

const admin = z.preprocess(
  (v) => (v === false ? { enabled: false } : v),
  z.strictObject(
    {
      /** The admin listener (health, readiness, metrics, backends). */
      enabled: z.boolean({ error: "must be true or false" }).default(true),
      /** Unset means 127.0.0.1:9090, and a busy port then only logs a warning. */
      listen: listen.optional(),
      /** Bearer token required on every admin endpoint except /health and /ready. */
      token: z.string({ error: "must be a string" }).min(1, { error: "must not be empty" }).optional(),
      /** Serve Prometheus metrics at /metrics. */
      metrics: z.boolean({ error: "must be true or false" }).default(true),
      /** Allow a non-loopback `listen` without a token (core/config/exposure.ts). */
      insecure: z.boolean({ error: "must be true or false" }).optional(),
    },
    { error: "must be false or a map with listen, token, metrics and insecure" },
  ),
);

const WORKERS = 'must be "auto" (one per CPU core) or a whole number of processes from 1 to 1024';
/** Processes serving the port: "auto" = one per CPU core (core/cluster/). */
const workers = z
  .union([z.literal("auto"), z.number()], { error: WORKERS })
  .refine((v) => v === "auto" || (Number.isInteger(v) && v >= 1 && v <= 1024), { error: WORKERS })
  .default("auto");

export const configSchema = z.strictObject(
  {
    /** One address, or a list of plain, TLS and redirect listeners (core/config/tls.ts). */
    listen: listenSchema.default({ hostname: "0.0.0.0", port: 8080 }),
    workers,
    shutdown_timeout: duration.default(30_000),
    pools: z.record(z.string(), poolSchema, { error: "must be a map of pool name: pool" }),
    routes: z.array(routeSchema, { error: "must be a list of routes" }).optional(),
    log: log.prefault({}),
    limits: limits.prefault({}),
    /** `watch: true` reloads when the config or a plugin file (or a helper it imports) changes. */
    plugins: z.strictObject({ watch: z.boolean({ error: "must be true or false" }).default(false) }).prefault({}),
    admin: admin.prefault({}),
    telemetry: telemetry.optional(),
    /** Operator state (drain, weight set through the admin API) kept across restarts; relative to the config's folder. */
    state_file: z.string({ error: "must be a file path" }).min(1, { error: "must not be empty" }).optional(),
    /** Shared state for several instances, e.g. a Redis for `rate-limit: { store }` (core/config/stores.ts). */
    stores: storesSchema.optional(),
    /** The ACME account and CA for `tls.acme` names (core/config/tls.ts). */
    acme: acmeSchema.optional(),
  },
  { error: "must be a map" },
);

export type Config = z.output<typeof configSchema>;
export type PoolConfig = Config["pools"][string];
export type BackendConfig = PoolConfig["backends"][number];
export type RouteConfig = NonNullable<Config["routes"]>[number];
export type MiddlewareConfig = RouteConfig["middleware"][number];
