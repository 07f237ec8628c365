/** The schema of one route: what it matches, the pool it sends to, its middleware and tunnel keys. */
import { z } from "zod";
import { isSlashed } from "./defaults.ts";
import { isRegExp } from "./fields.ts";
import { tunnelKeys } from "./protocols.ts";

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
      // A scalar too, for a built-in with one setting (`- strip-prefix: /api`).
      options: z.union([z.record(z.string(), z.unknown()), z.string(), z.number(), z.boolean()], {
        error: "must be a map of options (or one value, such as strip-prefix's path)",
      }).default({}),
    },
    { error: "must be { plugin: ./file.ts, options } or { NAME: options } for a built-in such as rate-limit" },
  ),
);

/** A header or query value to match: exact text, or `/regex/` (JavaScript syntax, unanchored unless written with ^ $). */
const matchValue = z
  .union([z.string(), z.number(), z.boolean()], { error: "must be a value to match exactly, or /regex/" })
  .transform(String)
  .refine((v) => !isSlashed(v) || isRegExp(v.slice(1, -1)), { error: "must be a valid /regex/ (JavaScript syntax)" });

export { isSlashed };

/**
 * Variables the built-in transforms fill in per request (`${client_ip}`, …): never read from the
 * environment when the config is loaded (environment variables are upper case by convention).
 */
export const REQUEST_VARIABLES: ReadonlySet<string> = new Set(["client_ip", "request_id", "host", "path", "query", "method"]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const routeSchema = z.strictObject(
  {
    match: z
      .strictObject(
        {
          host: z.string({ error: "must be a host name such as api.example.com or *.example.com" }).optional(),
          path: z
            .string({ error: "must be a path prefix starting with /" })
            .startsWith("/", { error: "must be a path prefix starting with /" })
            .default("/"),
          /** Tested against the path (no query) after `path` matched; unanchored unless written with ^ / $. */
          path_regex: z
            .string({ error: "must be a regular expression for the path, such as ^/v[0-9]+/" })
            .refine(isRegExp, { error: "must be a valid regular expression (JavaScript syntax)" })
            .optional(),
          methods: z
            .array(
              z.string({ error: "must be an HTTP method such as GET" }).regex(TOKEN, { error: "must be an HTTP method such as GET" })
                .transform((m) => m.toUpperCase()),
              { error: "must be a list of HTTP methods such as [GET, HEAD]" },
            )
            .optional(),
          headers: z
            .record(
              z.string().regex(TOKEN, { error: "must be a header name" }).transform((n) => n.toLowerCase()),
              matchValue,
              { error: "must be a map of header name to value or /regex/" },
            )
            .optional(),
          query: z.record(z.string(), matchValue, { error: "must be a map of query parameter to value or /regex/" }).optional(),
        },
        { error: "must be a map with host, path, path_regex, methods, headers and/or query" },
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
