/**
 * Routes: a request's host and path choose one, most specific first (an exact host before a
 * wildcard before none, then the longest path prefix); each route is a Hono app running its
 * middleware before the proxy.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { RouteConfig } from "../config/schema.ts";
import type { Middleware } from "../plugins/api.ts";
import { PluginFailure } from "../plugins/isolate.ts";
import type { Pool } from "../pool/pool.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { Logging } from "../telemetry/log.ts";
import { requestIncoming, type Exchange, type RouteOptions } from "./exchange.ts";
import { proxyToPool } from "./proxy.ts";
import { errorResponse, toResponse } from "./response.ts";
import type { Upgraded } from "./tunnel.ts";

export type Env = {
  Bindings: {
    ex: Exchange;
    raw?: RawExchange;
    /** The Upgrade to ask the backend for (tunnel.ts allowedUpgrade). */
    upgrade?: string;
    /** Set when the backend answered 101: the gateway opens the tunnel if the chain returns {@link tunnelAnswer}. */
    upgraded?: Upgraded;
    tunnelAnswer?: Response;
  };
};

export interface Route {
  /** Low-cardinality name for logs and spans: `host/path → pool`. */
  readonly name: string;
  readonly host: string | undefined;
  /** `*.example.com` stored as `.example.com`. */
  readonly hostSuffix: string | undefined;
  readonly path: string;
  readonly pool: Pool;
  readonly app: Hono<Env>;
  /** No middleware: the raw listener's requests go straight to the proxy, no Request/Response made. */
  readonly direct: boolean;
  readonly options: RouteOptions;
}

export function makeRoute(rc: RouteConfig, pool: Pool, logging: Logging, middleware: readonly Middleware[], bodyTimeoutMs: number): Route {
  const host = rc.match.host?.toLowerCase();
  const app = new Hono<Env>();
  app.onError((err, c) => {
    // A middleware's deliberate answer (401, 403, 429, …).
    if (err instanceof HTTPException) return err.getResponse();
    // A user plugin's failure was already counted and logged (rate-limited) by its wrapper.
    if (!(err instanceof PluginFailure)) logging.logger.error("route failed", { route: c.env.ex.route, error: String(err) });
    c.env.ex.error = String(err);
    return errorResponse(500, "internal error");
  });
  // No middleware, no extra work: the route is one handler, as before.
  for (const mw of middleware) app.use("*", mw as unknown as MiddlewareHandler<Env>);
  const upgrades = new Set(rc.upgrade);
  if (rc.websocket) upgrades.add("websocket");
  const options: RouteOptions = {
    retryNonIdempotent: rc.retry_non_idempotent,
    bodyTimeoutMs,
    direct: middleware.length === 0,
    upgrades,
    tunnelIdleMs: rc.timeouts.tunnel_idle,
  };
  app.all("*", async (c) => {
    const incoming = requestIncoming(c.req.raw, c.env.raw);
    incoming.upgrade = c.env.upgrade;
    const result = await proxyToPool(pool, incoming, c.env.ex, options);
    if (result instanceof Response || result.upgraded === undefined) return toResponse(result, c.env.ex);
    // A 101 cannot be a web Response: the chain gets a stand-in, and the gateway switches if it comes back.
    c.env.upgraded = result.upgraded;
    return (c.env.tunnelAnswer = new Response(null, { status: 200 }));
  });
  return {
    name: `${host ?? "*"}${rc.match.path} → ${pool.name}`,
    host: host?.startsWith("*.") ? undefined : host,
    hostSuffix: host?.startsWith("*.") ? host.slice(1) : undefined,
    path: rc.match.path,
    pool,
    app,
    direct: middleware.length === 0,
    options,
  };
}

export function hostRank(r: Route): number {
  return r.host ? 2 : r.hostSuffix ? 1 : 0;
}

export function matchRoute(routes: readonly Route[], hostHeader: string | null, path: string): Route | undefined {
  // The Host is read only if a route asks for one (routes with a host sort first).
  const first = routes[0];
  if (first === undefined || (first.host === undefined && first.hostSuffix === undefined)) {
    for (const r of routes) if (pathMatches(r.path, path)) return r;
    return undefined;
  }
  let host = hostHeader?.toLowerCase() ?? "";
  const colon = host.lastIndexOf(":");
  if (colon > 0 && host.indexOf("]", colon) < 0) host = host.slice(0, colon);
  for (const r of routes) {
    if (r.host !== undefined && r.host !== host) continue;
    if (r.hostSuffix !== undefined && !host.endsWith(r.hostSuffix)) continue;
    if (pathMatches(r.path, path)) return r;
  }
  return undefined;
}

/** `/api` matches `/api` and `/api/x` but not `/apix`; a prefix ending in `/` matches anything below it. */
function pathMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith("/") || path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}
