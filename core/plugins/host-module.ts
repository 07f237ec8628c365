/**
 * The run-time values of the `"fulcrum"` module that plugins import: the host's own Hono and a
 * few helpers. Bun serves this object as a virtual module; Deno maps `"fulcrum"` to this file with
 * an import map. Its types are declared in `core/plugins/api.ts` (keep the two in step).
 */
import pkg from "../../package.json" with { type: "json" };
export { Hono } from "hono";
export { HTTPException } from "hono/http-exception";

export const version: string = pkg.version;

/** The TCP peer address of the request being handled (set by the server on `c.env.ex`). */
export function clientIp(c: { env?: { ex?: { clientIp?: string } } }): string {
  return c.env?.ex?.clientIp ?? "";
}
