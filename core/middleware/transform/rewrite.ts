/**
 * The built-in `rewrite` transform: the backend gets the path with a regular expression replaced
 * (`$1`, `$<name>` as in JavaScript's String.replace); the query is kept. A path the regex does
 * not match is sent unchanged. After a `strip-prefix` it sees the stripped path.
 *
 *   middleware:
 *     - rewrite: { regex: "^/v1/(.*)", replace: "/$1" }
 */
import type { MiddlewarePlugin, Transform } from "../../plugins/api.ts";
import { knownKeys, mapOption, splitTarget } from "./template.ts";

export interface RewriteOptions {
  /** Regular expression tested against the path (no query). Required. */
  regex: string;
  /** The replacement; `$1`, `$<name>` refer to groups. Required. */
  replace: string;
}

export function createRewrite(options: RewriteOptions): Transform {
  const o = mapOption(options, "rewrite");
  knownKeys(o, ["regex", "replace"]);
  if (typeof o.regex !== "string") throw new TypeError(`regex must be a regular expression, got ${JSON.stringify(o.regex)}`);
  let regex: RegExp;
  try {
    regex = new RegExp(o.regex);
  } catch (e) {
    throw new RangeError(`regex is not a valid regular expression: ${(e as Error).message}`);
  }
  if (typeof o.replace !== "string") throw new TypeError(`replace must be a string such as "/$1", got ${JSON.stringify(o.replace)}`);
  // deno-lint-ignore no-control-regex -- control characters are what it refuses
  if (/[\s\0-\x1f]/.test(o.replace))
    throw new RangeError(`replace may not contain spaces or control characters, got ${JSON.stringify(o.replace)}`);
  const replace = o.replace;
  return {
    request(req) {
      const [path, query] = splitTarget(req.target);
      if (!regex.test(path)) return;
      let out = path.replace(regex, replace);
      if (!out.startsWith("/")) out = `/${out}`;
      // A replacement with a query of its own keeps the client's after it, as nginx's rewrite does.
      req.target = query !== "" && out.includes("?") ? `${out}&${query.slice(1)}` : out + query;
    },
  };
}

export default {
  kind: "middleware",
  name: "rewrite",
  create: (options) => createRewrite(options),
} satisfies MiddlewarePlugin<RewriteOptions>;
