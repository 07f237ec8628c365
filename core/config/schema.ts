/**
 * The config schema: one place that says what every key accepts, its default and its error
 * message. `load.ts` turns the issues it reports into `file:line:col` messages.
 */
import { z } from "zod";
import { parseDuration, parseListen, parseSize } from "./units.ts";

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

const positiveInt = (what = "must be a positive integer") =>
  z.number({ error: what }).int({ error: what }).positive({ error: what });

const listen = z
  .union([z.string(), z.number()], { error: "must be host:port, :port or a port number" })
  .refine((s) => parseListen(s) !== undefined, { error: "must be host:port, :port or a port number (0-65535)" })
  .transform((s) => parseListen(s)!);

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
    connect: duration.default(5_000),
    /** Time from sending the request to receiving the response headers. */
    response: duration.default(60_000),
  },
  { error: "must be a map with connect and response" },
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
    middleware: z.array(middleware, { error: "must be a list of middleware" }).default([]),
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
  },
  { error: "must be a map with max_request_body and client_idle_timeout" },
);

export const configSchema = z.strictObject(
  {
    listen: listen.default({ hostname: "0.0.0.0", port: 8080 }),
    shutdown_timeout: duration.default(30_000),
    pools: z.record(z.string(), pool, { error: "must be a map of pool name: pool" }),
    routes: z.array(route, { error: "must be a list of routes" }).optional(),
    log: log.prefault({}),
    limits: limits.prefault({}),
    /** `watch: true` reloads when the config or a plugin file (or a helper it imports) changes. */
    plugins: z.strictObject({ watch: z.boolean({ error: "must be true or false" }).default(false) }).prefault({}),
  },
  { error: "must be a map" },
);

export type Config = z.output<typeof configSchema>;
export type PoolConfig = Config["pools"][string];
export type BackendConfig = PoolConfig["backends"][number];
export type RouteConfig = NonNullable<Config["routes"]>[number];
export type MiddlewareConfig = RouteConfig["middleware"][number];
