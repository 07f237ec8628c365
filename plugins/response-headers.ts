/**
 * Response headers: set or remove headers on every response of a route, after the backend
 * answered (e.g. security headers, or hiding `server`).
 *
 *   middleware:
 *     - plugin: ./plugins/response-headers.ts
 *       options: { set: { strict-transport-security: max-age=31536000 }, remove: [server], via: true }
 */
import { version, type MiddlewarePlugin } from "fulcrum";

interface Options {
  /** Headers to set (replacing the backend's). @default {} */
  set?: Record<string, string>;
  /** Headers to remove. @default [] */
  remove?: string[];
  /** Add `via: fulcrum/<version>`. @default false */
  via?: boolean;
}

export default {
  kind: "middleware",
  name: "response-headers",
  create(options: Options) {
    const set = Object.entries(options.set ?? {}).map(([k, v]) => [k, String(v)] as const);
    const remove = options.remove ?? [];
    if (!Array.isArray(remove)) throw new TypeError(`remove must be a list of header names, got ${JSON.stringify(options.remove)}`);
    if (options.via) set.push(["via", `fulcrum/${version}`]);
    return async (c, next) => {
      await next();
      const headers = c.res.headers;
      for (const name of remove) headers.delete(name);
      for (const [name, value] of set) headers.set(name, value);
    };
  },
} satisfies MiddlewarePlugin<Options>;
