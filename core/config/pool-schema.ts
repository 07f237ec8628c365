/** The schema of one pool: its backends, strategy, timeouts, health and resilience settings. */
import { isIP } from "../lib/ip.ts";
import { z } from "zod";
import { parseStatusRanges } from "./units.ts";
import { backendTlsSchema } from "./tls.ts";
import { count, duration, isHttpUrl, isRegExp, positiveInt, ratio, size } from "./fields.ts";

/** One backend: a URL, or `{ url, id, weight, labels }` (a discovered entry is read with it too). */
export const backendSchema = z.preprocess(
  (v) => (typeof v === "string" ? { url: v } : v),
  z.strictObject(
    {
      url: z
        .string({ error: "must be an http:// or https:// URL" })
        .refine(isHttpUrl, { error: "must be an http:// or https:// URL with a host and no query" }),
      id: z.string({ error: "must be a string" }).min(1, { error: "must not be empty" }).optional(),
      /** 0 drains the backend softly: health-checked, no new requests, sticky clients stay. */
      weight: count("must be a whole number >= 0 (0 drains the backend)").default(1),
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

const COOKIE_NAME = "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)";
/** Cookie stickiness on top of the strategy (core/pool/sticky.ts). `sticky: true` takes every default. */
const sticky = z.preprocess(
  (v) => (v === true ? {} : v),
  z.strictObject(
    {
      cookie: z.string({ error: COOKIE_NAME }).regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: COOKIE_NAME }).default("fulcrum_be"),
      /** Max-Age of the cookie; 0 for a session cookie (gone when the browser closes). */
      ttl: duration.default(0),
      secure: z.boolean({ error: "must be true or false" }).default(false),
      http_only: z.boolean({ error: "must be true or false" }).default(true),
      same_site: z.enum(["lax", "strict", "none"], { error: 'must be "lax", "strict" or "none"' }).default("lax"),
      path: z.string({ error: "must be a path starting with /" }).regex(/^\/[^;\s]*$/, { error: "must be a path starting with /" }).default(
        "/",
      ),
      /** Mixed into the cookie value so that it cannot be computed from a backend's id; the same on every instance. */
      secret: z.string({ error: "must be a string" }).optional(),
    },
    { error: "must be true or a map with cookie, ttl, secure, http_only, same_site, path and secret" },
  ).refine((s) => s.same_site !== "none" || s.secure, { error: "same_site: none needs secure: true (browsers refuse it otherwise)" }),
);
const RESOLVER = "must be a DNS server address: an IP with an optional port, like 127.0.0.1:53 or [::1]:53";
/** `discovery.dns`: backends from A, AAAA or SRV records (core/discovery/dns.ts). */
const dns = z.strictObject(
  {
    name: z.string({ error: "must be a DNS name" }).min(1, { error: "must not be empty" }),
    type: z.enum(["A", "AAAA", "SRV"], { error: "must be A, AAAA or SRV" }).default("A"),
    /** The backends' port; SRV records carry their own. */
    port: z.number({ error: "must be a port from 1 to 65535" }).int().min(1).max(65_535, { error: "must be a port from 1 to 65535" })
      .optional(),
    /** Re-resolve this often; default: the records' TTL (at least 1s). */
    interval: duration.refine((ms) => ms >= 100, { error: "must be at least 100ms" }).optional(),
    /** The DNS server to ask; default: the system's resolvers. */
    resolver: z.string({ error: RESOLVER }).refine(isResolver, { error: RESOLVER }).optional(),
    scheme: z.enum(["http", "https"], { error: 'must be "http" or "https"' }).default("http"),
  },
  { error: "must be a map with name, type, port, interval and resolver" },
).superRefine((d, ctx) => {
  if (d.type !== "SRV" && d.port === undefined) {
    ctx.addIssue({ code: "custom", message: `with type ${d.type}; only SRV records carry a port`, path: ["port"] });
  }
});

/** Where a pool's backends come from at run time: `dns`, or a discovery plugin. */
const discovery = z
  .strictObject(
    {
      dns: dns.optional(),
      plugin: z.string({ error: "must be a path to a .ts or .js file" }).optional(),
      options: z.record(z.string(), z.unknown(), { error: "must be a map of options" }).default({}),
      /** How long the source must answer only empty lists before the pool empties; default: never. */
      empty_after: duration.optional(),
    },
    { error: "must be { dns: {...} } or { plugin, options }, with an optional empty_after" },
  )
  .refine((d) => (d.dns === undefined) !== (d.plugin === undefined), { error: "must set exactly one of dns or plugin" })
  // The registered name: "dns", or the plugin's own name once core/plugins/load.ts has loaded it.
  .transform((d) => ({ ...d, name: d.dns !== undefined ? "dns" : undefined as string | undefined }));

function isResolver(s: string): boolean {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)|([0-9a-fA-F:]+))(?::(\d{1,5}))?$/.exec(s.trim());
  if (!m) return false;
  // A bare IPv6 address has colons of its own: no port on it.
  if (m[3] !== undefined && m[4] !== undefined) return isIP(`${m[3]}:${m[4]}`) === 6;
  const ip = m[1] ?? m[2] ?? m[3]!;
  return isIP(ip) !== 0 && (m[4] === undefined || (Number(m[4]) >= 1 && Number(m[4]) <= 65_535));
}

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

export const poolSchema = z.strictObject(
  {
    strategy: strategy.prefault("round-robin"),
    /** Fixed backends; a pool has these or `discovery`, not both. */
    backends: z.array(backendSchema, { error: "must be a list of backends" }).min(1, { error: "must list at least one backend" })
      .optional(),
    /** Backends found at run time (DNS records or a discovery plugin) instead of `backends`. */
    discovery: discovery.optional(),
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
    /** Cookie stickiness on top of the strategy: a client keeps its backend while it is available. */
    sticky: sticky.optional(),
    /** When no backend is available, route across all of them anyway instead of answering 503. */
    panic: z.boolean({ error: "must be true or false" }).default(false),
    /** How https:// backends are verified (core/config/tls.ts). */
    tls: backendTlsSchema.optional(),
  },
  { error: "must be a map with strategy and backends" },
)
  .superRefine((p, ctx) => {
    if (p.backends === undefined && p.discovery === undefined) {
      ctx.addIssue({ code: "custom", message: "must list at least one backend, or the pool sets discovery", path: ["backends"] });
    } else if (p.backends !== undefined && p.discovery !== undefined) {
      ctx.addIssue({
        code: "custom",
        message: "cannot be set together with backends: a pool's backends are either listed or discovered (use two pools for both)",
        path: ["discovery"],
      });
    }
  })
  // Discovered pools start with no listed backend; their members come and go at run time.
  .transform((p) => ({ ...p, backends: p.backends ?? [] }));
