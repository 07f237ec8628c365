/** The schema of one route: what it matches, the pool it sends to, its middleware and tunnel keys. */
import { z } from "zod";
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
      options: z.record(z.string(), z.unknown(), { error: "must be a map of options" }).default({}),
    },
    { error: "must be { plugin: ./file.ts, options } or { NAME: options } for a built-in such as rate-limit" },
  ),
);

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
