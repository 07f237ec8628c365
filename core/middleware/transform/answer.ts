/**
 * The built-in `redirect` and `respond` transforms: Fulcrum answers by itself, no backend is
 * asked. `to`, `body` and header values may use `${host}`, `${path}`, `${query}`, `${method}`,
 * `${client_ip}`, `${request_id}`.
 *
 *   middleware:
 *     - redirect: { to: "https://example.com${path}${query}", status: 301 }
 *     - respond: { status: 200, body: "ok\n", headers: { content-type: text/plain } }
 */
import type { MiddlewarePlugin, Transform, TransformRequest } from "../../plugins/api.ts";
import { compileTemplate, headerName, knownKeys, mapOption } from "./template.ts";

export interface RedirectOptions {
  /** Where to: an absolute URL or a path. Required. */
  to: string;
  /** 301, 302, 303, 307 or 308. @default 302 */
  status?: number;
}

export interface RespondOptions {
  /** @default 200 */
  status?: number;
  /** @default "" */
  body?: string;
  /** @default {} (`content-type: text/plain; charset=utf-8` when there is a body and none is given) */
  headers?: Record<string, string>;
}

const REDIRECTS = [301, 302, 303, 307, 308];

export function createRedirect(options: RedirectOptions): Transform {
  const o = mapOption(options, "redirect");
  knownKeys(o, ["to", "status"]);
  if (typeof o.to !== "string" || o.to === "") throw new TypeError(`to must be a URL or path, got ${JSON.stringify(o.to)}`);
  const to = compileTemplate(o.to, "to");
  const status = o.status ?? 302;
  if (!REDIRECTS.includes(status as number))
    throw new RangeError(`status must be one of ${REDIRECTS.join(", ")}, got ${JSON.stringify(status)}`);
  return {
    request: (req) => new Response(null, { status: status as number, headers: { location: to(req) } }),
  };
}

export function createRespond(options: RespondOptions): Transform {
  const o = mapOption(options, "respond");
  knownKeys(o, ["status", "body", "headers"]);
  const status = o.status ?? 200;
  if (!Number.isInteger(status) || (status as number) < 200 || (status as number) > 599) {
    throw new RangeError(`status must be an HTTP status from 200 to 599, got ${JSON.stringify(status)}`);
  }
  const body = compileTemplate(o.body ?? "", "body");
  const headers = Object.entries(mapOption(o.headers, "headers")).map(([n, v]): [string, (r: TransformRequest) => string] => [
    headerName(n, "headers"),
    compileTemplate(v, `headers.${n}`),
  ]);
  const typed = headers.some(([n]) => n === "content-type");
  const empty = o.body === undefined || o.body === "";
  return {
    request(req) {
      const h = new Headers();
      for (const [n, v] of headers) h.append(n, v(req));
      if (!typed && !empty) h.set("content-type", "text/plain; charset=utf-8");
      return new Response(empty || status === 204 || status === 304 ? null : body(req), { status: status as number, headers: h });
    },
  };
}

export const redirect = {
  kind: "middleware",
  name: "redirect",
  create: (options) => createRedirect(options),
} satisfies MiddlewarePlugin<RedirectOptions>;

export const respond = {
  kind: "middleware",
  name: "respond",
  create: (options) => createRespond(options),
} satisfies MiddlewarePlugin<RespondOptions>;
