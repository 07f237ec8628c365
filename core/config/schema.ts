/**
 * The config schema: one place that says what every key accepts, its default and its error
 * message. `load.ts` turns the issues it reports into `file:line:col` messages.
 */
import { z } from "zod";
import { parseDuration, parseListen, parseSize, parseStatusRanges } from "./units.ts";
import { acmeSchema, backendTlsSchema, listenSchema } from "./tls.ts";
import { tunnelKeys } from "./protocols.ts";

export { TUNNEL_IDLE_DEFAULT, type Http2Config } from "./protocols.ts";

const DURATION = "must be a duration like 250ms, 5s or 1m";
const SIZE = "must be a size like 512kb or 10mb (0 for no limit)";

const duration = z
  .string({ error: DURATION })
  .refine((s) => parseDuration(s) !== undefined, { error: DURATION })
  .transform((s) => parseDuration(s)!);

const size = z
  .union([z.string(), z.number()], { error: SIZE })
  .refine((s) => parseSize(s) !== undefined, { error: SIZE })
  .transform((s) => parseSize(s)!);

const positiveInt = (what = "must be a positive integer") => z.number({ error: what }).int({ error: what }).positive({ error: what });

const RATIO = "must be a percentage like 20% or a ratio like 0.2";
const ratio = z
  .union([z.string(), z.number()], { error: RATIO })
  .transform((v) => (typeof v === "number" ? v : /^\d+(\.\d+)?%$/.test(v.trim()) ? Number(v.trim().slice(0, -1)) / 100 : NaN))
  .refine((v) => v >= 0 && v <= 1, { error: RATIO });

const count = (what = "must be a whole number >= 0") => z.number({ error: what }).int({ error: what }).nonnegative({ error: what });

const listen = z
  .union([z.string(), z.number()], { error: "must be host:port, :port or a port number" })
  .refine((s) => parseListen(s) !== undefined, { error: "must be host:port, :port or a port number (0-65535)" })
  .transform((s) => parseListen(s)!);

function isRegExp(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\//i.test(s)) return false;
  try {
    const u = new URL(s);
    return u.hostname !== "" && !u.search && !u.hash && !u.username;
  } catch {
    return false;
  }
}

const backend = z.preprocess(
  (v) => (typeof v === "string" ? { url: v } : v),
  z.strictObject(
    {
      url: z
        .string({ error: "must be an http:// or https:// URL" })
        .refine(isHttpUrl, { error: "must be an http:// or https:// URL with a host and no query" }),
      id: z.string({ error: "must be a string" }).min(1, { error: "must not be empty" }).optional(),
      weight: positiveInt().default(1),
      labels: z.record(z.string(), z.coerce.string(), { error: "must be a map of label: value" }).default({}),
    },
    { error: "must be a URL or { url, weight, labels }" },
  ),
);

const strategy = z.preprocess(
  (v) => (typeof v === "string" ? { name: v } : v),
  z
    .strictObject(
      {
        name: z.string({ error: "must be a strategy name" }).optional(),
        plugin: z.string({ error: "must be a path to a .ts or .js file" }).optional(),
        options: z.record(z.string(), z.unknown(), { error: "must be a map of options" }).default({}),
      },
      { error: "must be a strategy name, { name, options } or { plugin, options }" },
    )
    .refine((s) => (s.name === undefined) !== (s.plugin === undefined), {
      error: "must set exactly one of name or plugin",
    }),
);

// A route's middleware: `{ plugin: ./file.ts, options }` or a registered one by its name as the
// only key (`{ rate-limit: { rate: 100/s } }`, DESIGN.md §5); normalised to { name | plugin, options }.
const middleware = z.preprocess(
  (v) => {
    if (!v || typeof v !== "object" || Array.isArray(v)) return v;
    const keys = Object.keys(v);
    return keys.length === 1 && keys[0] !== "plugin" ? { name: keys[0], options: (v as Record<string, unknown>)[keys[0]!] ?? {} } : v;
  },
  z.strictObject(
    {
      name: z.string().optional(),
      plugin: z.string({ error: "must be a path to a .ts or .js file" }).optional(),
      options: z.record(z.string(), z.unknown(), { error: "must be a map of options" }).default({}),
    },
    { error: "must be { plugin: ./file.ts, options } or { NAME: options } for a built-in such as rate-limit" },
  ),
);

const timeouts = z.strictObject(
  {
    /** Time to open a TCP connection to a backend. */
    connect: duration.refine((ms) => ms > 0, { error: "must be more than 0" }).default(5_000),
    /** Time from sending the request to receiving the response headers, per attempt. */
    response: duration.refine((ms) => ms > 0, { error: "must be more than 0" }).default(60_000),
    /** Deadline for getting a response across all attempts and backoff; 0 for none. */
    request: duration.default(0),
  },
  { error: "must be a map with connect, response and request" },
);

const STATUS = "must be status codes or ranges like 200-399 or 200,204";
const health = z.strictObject(
  {
    method: z.enum(["GET", "HEAD", "OPTIONS"], { error: "must be GET, HEAD or OPTIONS" }).default("GET"),
    path: z.string({ error: "must be a path starting with /" }).startsWith("/", { error: "must be a path starting with /" }).default("/"),
    host: z.string({ error: "must be a host name" }).optional(),
    interval: duration.default(5_000),
    timeout: duration.default(1_000),
    healthy_threshold: positiveInt().default(2),
    unhealthy_threshold: positiveInt().default(3),
    expect_status: z
      .union([z.string(), z.number()], { error: STATUS })
      .refine((v) => parseStatusRanges(v) !== undefined, { error: STATUS })
      .transform((v) => parseStatusRanges(v)!)
      .default([[200, 399]]),
    /** A substring, or a regular expression written /like this/. */
    expect_body: z
      .string({ error: "must be a substring or /a regular expression/" })
      .refine((v) => !/^\/.*\/$/.test(v) || isRegExp(v.slice(1, -1)), { error: "must be a valid /regular expression/" })
      .transform((v) => (/^\/.+\/$/.test(v) ? new RegExp(v.slice(1, -1)) : v))
      .optional(),
    /** Random extra delay per check, up to this much; default a tenth of the interval. */
    jitter: duration.optional(),
    initial: z.enum(["healthy", "unknown"], { error: 'must be "healthy" or "unknown"' }).default("healthy"),
  },
  { error: "must be a map of health check settings" },
).transform((h) => ({ ...h, jitter: h.jitter ?? h.interval / 10 }));

const FAILURE_KINDS = ["connect", "reset", "timeout", "5xx"] as const;
const outlier = z.strictObject(
  {
    consecutive_failures: positiveInt().default(5),
    on: z.array(z.enum(FAILURE_KINDS, { error: `must be one of ${FAILURE_KINDS.join(", ")}` })).default([...FAILURE_KINDS]),
    ejection_time: duration.default(30_000),
    max_ejection_time: duration.default(300_000),
    max_ejected_percent: z.number({ error: "must be a percentage 0-100" }).min(0).max(100, { error: "must be a percentage 0-100" }).default(
      50,
    ),
  },
  { error: "must be a map of outlier detection settings" },
);

const breaker = z.strictObject(
  {
    failures: count().default(5),
    failure_ratio: ratio.default(0),
    window: duration.default(10_000),
    min_requests: count().default(20),
    open_for: duration.default(30_000),
    half_open_requests: positiveInt().default(1),
  },
  { error: "must be a map of circuit breaker settings" },
);

const RETRY_RATE = "must be a number of retries per second >= 0";
/** `budget.min_retries` (a floor per window until 0.1.0) is refused, naming the key that replaced it. */
const MIN_RETRIES_GONE = "was replaced by min_retries_per_second, a rate always allowed on top of ratio " +
  "(min_retries was a floor per window: min_retries: 10 with a 10s window is min_retries_per_second: 1)";
const RETRY_ON = ["connect", "reset", "timeout", "502", "503", "504"] as const;
const retry = z.strictObject(
  {
    attempts: positiveInt().default(2),
    on: z
      .array(z.coerce.string().pipe(z.enum(RETRY_ON, { error: `must be one of ${RETRY_ON.join(", ")}` })))
      .default([...RETRY_ON]),
    backoff: z
      .strictObject({ base: duration.default(25), max: duration.default(1_000) }, { error: "must be a map with base and max" })
      .prefault({}),
    budget: z
      .preprocess(
        (v, ctx) => {
          if (typeof v === "string" || typeof v === "number") return { ratio: v };
          // The old key changed meaning: refuse it by name rather than reading it as something else.
          if (v !== null && typeof v === "object" && "min_retries" in v) {
            const { min_retries, ...rest } = v as Record<string, unknown>;
            ctx.addIssue({ code: "custom", message: MIN_RETRIES_GONE, path: ["min_retries"], input: min_retries });
            return rest;
          }
          return v;
        },
        z.strictObject(
          {
            ratio: ratio.default(0.2),
            window: duration.refine((ms) => ms > 0, { error: "must be a duration > 0" }).default(10_000),
            /** Retries per second always allowed on top of `ratio` (Finagle's and Linkerd's minRetriesPerSec). */
            min_retries_per_second: z.number({ error: RETRY_RATE }).nonnegative({ error: RETRY_RATE }).default(10),
          },
          { error: "must be a percentage or a map with ratio, window and min_retries_per_second" },
        ),
      )
      .prefault({}),
    per_try_timeout: duration.default(0),
    buffer_body_limit: size.default(64 * 1024),
  },
  { error: "must be a map of retry settings" },
);

const keepalive = z.strictObject(
  {
    /** Idle upstream connections kept per backend. */
    max_idle: z.number({ error: "must be a whole number >= 0" }).int().nonnegative().default(128),
    /** Close an idle upstream connection after this long; keep below the backend's own timeout. */
    idle_timeout: duration.default(4_000),
  },
  { error: "must be a map with max_idle and idle_timeout" },
);

const pool = z.strictObject(
  {
    strategy: strategy.prefault("round-robin"),
    backends: z.array(backend, { error: "must be a list of backends" }).min(1, { error: "must list at least one backend" }),
    /** `client` passes the client's Host header; `backend` sends the backend URL's host. */
    host_header: z.enum(["client", "backend"], { error: 'must be "client" or "backend"' }).default("client"),
    timeouts: timeouts.prefault({}),
    keepalive: keepalive.prefault({}),
    health: health.optional(),
    outlier_detection: outlier.optional(),
    circuit_breaker: breaker.optional(),
    retry: retry.prefault({}),
    /** Requests in flight allowed per backend and per pool; more fail fast with 503. 0: no limit. */
    max_inflight: z
      .strictObject({ backend: count().default(0), pool: count().default(0) }, { error: "must be a map with backend and pool" })
      .prefault({}),
    /** When no backend is available, route across all of them anyway instead of answering 503. */
    panic: z.boolean({ error: "must be true or false" }).default(false),
    /** How https:// backends are verified (core/config/tls.ts). */
    tls: backendTlsSchema.optional(),
  },
  { error: "must be a map with strategy and backends" },
);

const route = z.strictObject(
  {
    match: z
      .strictObject(
        {
          host: z.string({ error: "must be a host name such as api.example.com or *.example.com" }).optional(),
          path: z
            .string({ error: "must be a path prefix starting with /" })
            .startsWith("/", { error: "must be a path prefix starting with /" })
            .default("/"),
        },
        { error: "must be a map with host and/or path" },
      )
      .prefault({}),
    pool: z.string({ error: "must name a pool" }),
    /** Also retry non-idempotent requests (POST, PATCH) after they may have reached a backend. */
    retry_non_idempotent: z.boolean({ error: "must be true or false" }).default(false),
    middleware: z.array(middleware, { error: "must be a list of middleware" }).default([]),
    ...tunnelKeys(),
  },
  { error: "must be a map with match and pool" },
);

const log = z.strictObject(
  {
    level: z.enum(["debug", "info", "warning", "error"], { error: "must be debug, info, warning or error" }).default("info"),
    /** One JSON line per proxied request. */
    access_log: z.boolean({ error: "must be true or false" }).default(true),
    /** Write access-log lines to this file instead of standard output. */
    access_log_file: z.string({ error: "must be a file path" }).optional(),
  },
  { error: "must be a map with level and access_log" },
);

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
    pools: z.record(z.string(), pool, { error: "must be a map of pool name: pool" }),
    routes: z.array(route, { error: "must be a list of routes" }).optional(),
    log: log.prefault({}),
    limits: limits.prefault({}),
    /** `watch: true` reloads when the config or a plugin file (or a helper it imports) changes. */
    plugins: z.strictObject({ watch: z.boolean({ error: "must be true or false" }).default(false) }).prefault({}),
    admin: admin.prefault({}),
    telemetry: telemetry.optional(),
    /** Operator state (drain, weight set through the admin API) kept across restarts; relative to the config's folder. */
    state_file: z.string({ error: "must be a file path" }).min(1, { error: "must not be empty" }).optional(),
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
