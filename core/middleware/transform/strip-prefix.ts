/**
 * The built-in `strip-prefix` transform: the backend gets the path without a leading prefix
 * (`/api/users` → `/users`; `/api` → `/`). A path outside the prefix is sent unchanged.
 *
 *   middleware:
 *     - strip-prefix: /api          # or { prefix: /api }
 */
import type { MiddlewarePlugin, Transform } from "../../plugins/api.ts";
import { splitTarget } from "./template.ts";

export type StripPrefixOptions = string | { prefix: string };

export function createStripPrefix(options: StripPrefixOptions): Transform {
  const prefix = typeof options === "string" ? options : options?.prefix;
  if (typeof prefix !== "string" || !prefix.startsWith("/") || prefix.length < 2) {
    throw new RangeError(`strip-prefix must be a path prefix such as /api, got ${JSON.stringify(options)}`);
  }
  // `/api/` and `/api` strip the same segment.
  const p = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  return {
    request(req) {
      const [path, query] = splitTarget(req.target);
      if (!path.startsWith(p)) return;
      if (path.length === p.length) req.target = `/${query}`;
      else if (path.charCodeAt(p.length) === 47) req.target = path.slice(p.length) + query;
    },
  };
}

export default {
  kind: "middleware",
  name: "strip-prefix",
  create: (options) => createStripPrefix(options),
} satisfies MiddlewarePlugin<StripPrefixOptions>;
