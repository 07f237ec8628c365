/**
 * API-key check: requests without a known key in the header get 401 and never reach a backend.
 *
 *   middleware:
 *     - plugin: ./plugins/api-key.ts
 *       options: { header: x-api-key, keys: ["${API_KEY_1}", "${API_KEY_2}"] }
 */
import { clientIp, type MiddlewarePlugin } from "fulcrum";

interface Options {
  /** Header carrying the key. @default "x-api-key" */
  header?: string;
  /** Accepted keys (use ${ENV} substitution in the config for the secrets). Required. */
  keys: string[];
}

export default {
  kind: "middleware",
  name: "api-key",
  create(options: Options, api) {
    const header = options.header ?? "x-api-key";
    if (!Array.isArray(options.keys) || options.keys.length === 0 || options.keys.some((k) => typeof k !== "string" || k === "")) {
      throw new TypeError(`keys must be a non-empty list of non-empty strings, got ${JSON.stringify(options.keys)}`);
    }
    const keys = new Set(options.keys);
    return async (c, next) => {
      const key = c.req.header(header);
      if (key === undefined || !keys.has(key)) {
        api.log.debug("rejected a request without a valid API key", { client_ip: clientIp(c), path: c.req.path });
        return c.text("missing or invalid API key\n", 401, { "www-authenticate": `ApiKey header="${header}"` });
      }
      await next();
    };
  },
} satisfies MiddlewarePlugin<Options>;
