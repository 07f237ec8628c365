/**
 * Part of Fulcrum's public plugin API (middleware: the context, the chain, transforms); plugins import it from `"fulcrum"`, which is
 * `api.ts`. Types only: `fulcrum types` prints the parts together as one `.d.ts`, dropping the
 * `import type` lines between them.
 */
import type { PluginApi } from "./api-host.ts";

/**
 * The part of a Hono `Context` a middleware plugin is given, declared here so plugin authors get
 * editor types without installing Hono. At run time it is Hono's full `Context`
 * (https://hono.dev/docs/api/context), so anything Hono documents works.
 */
export interface MiddlewareContext {
  /** The incoming request. `req.raw` is the standard `Request`. */
  readonly req: {
    readonly raw: Request;
    readonly method: string;
    readonly path: string;
    readonly url: string;
    /** One request header, case-insensitive; `undefined` when absent. */
    header(name: string): string | undefined;
  };
  /** The response so far; after `await next()` it is the backend's (headers are mutable). */
  res: Response;
  /** Set a response header (after `await next()`, on the backend's response). */
  header(name: string, value: string, options?: { append?: boolean }): void;
  /** Build a plain-text response, e.g. `return c.text("no", 403)`. */
  text(text: string, status?: number, headers?: Record<string, string>): Response;
  /** Build a JSON response. */
  json(value: unknown, status?: number, headers?: Record<string, string>): Response;
  /** Per-request values shared between middleware: `c.set("tenant", t)`, then `c.get("tenant")`. */
  set(key: string, value: unknown): void;
  get(key: string): unknown;
}

/** Calls the rest of the chain (later middleware, then the proxy). */
export type Next = () => Promise<void>;

/**
 * A standard Hono middleware: return a `Response` to answer without proxying, or `await next()`
 * and then read or change `c.res`. Hono's own middleware (`cors()`, `basicAuth()`, …) fits this
 * type too. Throwing answers this request with 500; the process keeps serving.
 */
// Declared as a method so Hono's MiddlewareHandler (which takes the full Context) is assignable.
export type Middleware = {
  handle(c: MiddlewareContext, next: Next): Response | void | Promise<Response | void>;
}["handle"];

/**
 * The request as a {@link Transform} sees and edits it on its way to the backend. No web
 * `Request` is made for it: header edits and the new target go straight into what the proxy sends.
 */
export interface TransformRequest {
  /** HTTP method, upper case. */
  readonly method: string;
  /** The path the client asked for, without the query. Logs and spans keep it as the request's path. */
  readonly path: string;
  /** The client's query string with its `?`, or `""`. */
  readonly query: string;
  /** The `Host` the client asked for, as sent (with its port, if any). */
  readonly host: string;
  /** The client's IP address as the listener saw it (the TCP peer). */
  readonly clientIp: string;
  /**
   * Path and query the backend is sent; starts as the client's. Assign to rewrite it: the access
   * log (`upstream_path`) and the span (`fulcrum.upstream.path`) record the new one next to the original.
   */
  target: string;
  /** The request's id, once a middleware (the built-in `request-id`) set it: the access log and span record it. */
  requestId: string | undefined;
  /** A request header as the backend will get it (the client's, after earlier edits); lower-case name. */
  header(name: string): string | undefined;
  /** Replace a header sent to the backend. */
  setHeader(name: string, value: string): void;
  /** Add a value to a header sent to the backend (joined to an existing one with ", "). */
  addHeader(name: string, value: string): void;
  /** Do not send this header to the backend. */
  removeHeader(name: string): void;
}

/** The response as a {@link Transform} edits it on its way to the client: its headers. */
export interface TransformResponse {
  readonly status: number;
  /** A response header; lower-case name; several values joined with ", ". */
  header(name: string): string | undefined;
  setHeader(name: string, value: string): void;
  /** Add another line of this header (e.g. a second `set-cookie`). */
  addHeader(name: string, value: string): void;
  removeHeader(name: string): void;
}

/**
 * A middleware that only edits the request (path, headers), the response's headers, or answers
 * by itself, may be returned from {@link MiddlewarePlugin.create} in this form instead of a
 * function. It then works without a web `Request`/`Response`: a route whose middleware are all
 * transforms stays on the proxy's direct path. In a route that also has function middleware it
 * runs in its place in the chain. Both hooks are synchronous; a throw answers 500.
 *
 * @example
 * ```ts
 * import type { MiddlewarePlugin } from "fulcrum";
 * export default {
 *   kind: "middleware",
 *   name: "tenant-header",
 *   create: (options: { tenant: string }) => ({
 *     request(req) { req.setHeader("x-tenant", options.tenant); },
 *     response(res) { res.removeHeader("server"); },
 *   }),
 * } satisfies MiddlewarePlugin<{ tenant: string }>;
 * ```
 */
export interface Transform {
  /** Called before the request is proxied, in route order. Return a `Response` to answer without a backend (later middleware and the proxy are skipped). */
  request?(req: TransformRequest): Response | undefined | void;
  /** Called with the response before it goes to the client, in reverse route order (also for an answer of an earlier `request`). */
  response?(res: TransformResponse, req: TransformRequest): void;
}

/**
 * The default export of a middleware plugin file. Config:
 * `routes[].middleware: [ { plugin: ./api-key.ts, options: { keys: [...] } } ]`.
 *
 * @typeParam O The shape of `options` from the config.
 * @example
 * ```ts
 * import type { MiddlewarePlugin } from "fulcrum";
 * export default {
 *   kind: "middleware",
 *   name: "deny-delete",
 *   create(options: { status?: number }) {
 *     const status = options.status ?? 405;
 *     return async (c, next) => {
 *       if (c.req.method === "DELETE") return c.text("not here\n", status);
 *       await next();
 *     };
 *   },
 * } satisfies MiddlewarePlugin<{ status?: number }>;
 * ```
 */
export interface MiddlewarePlugin<O = Record<string, unknown>> {
  /** Always `"middleware"`. */
  readonly kind: "middleware";
  /** Unique name; configs refer to built-ins by it (`- rate-limit: { rate: 100/s }`). */
  readonly name: string;
  /**
   * Build the middleware for one route; called once per route that lists it (and again on
   * reload). Validate `options` here and throw a `TypeError`/`RangeError` naming the option.
   * Return a Hono-style function, or a {@link Transform} for a middleware that only edits the
   * request and response headers (cheaper: no web Request/Response is made for it).
   * @param options The `options` map from the config.
   * @default options {}
   */
  create(options: O, api: PluginApi): Middleware | Transform;
}
