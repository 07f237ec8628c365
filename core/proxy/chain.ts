/**
 * A route's middleware chain as a Hono app in front of the proxy. Loaded (with Hono) only when a
 * route needs it: a route with function middleware, or a request from the web-Request listener;
 * routes without middleware or with transforms only take the direct path (routes.ts).
 */
import { Hono, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Middleware, Transform } from "../plugins/api.ts";
import { isRateLimitDenial } from "../middleware/rate-limit.ts";
import { PluginFailure } from "../plugins/isolate.ts";
import { isTransform } from "../plugins/registry.ts";
import type { Pool } from "../pool/pool.ts";
import type { RawExchange } from "../runtime/types.ts";
import type { Logging } from "../telemetry/log.ts";
import { requestIncoming, type Exchange, type Incoming, type RouteOptions } from "./exchange.ts";
import { proxyToPool } from "./proxy.ts";
import { errorResponse, toResponse } from "./response.ts";
import { EditedIncoming, RequestEdit, ResponseEdit } from "./transform.ts";
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
    /** The request's edits by transforms in the chain, shared by all of them. */
    edit?: RequestEdit;
  };
};

/** A middleware's deliberate answer (401, 403, …): Hono's HTTPException, the class plugins get from "fulcrum". */
export function isHttpException(e: unknown): boolean {
  return e instanceof HTTPException;
}

export function buildChain(
  pool: Pool,
  logging: Logging,
  middleware: readonly (Middleware | Transform)[],
  options: RouteOptions,
): Hono<Env> {
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
  for (const mw of middleware) {
    app.use("*", isTransform(mw) ? honoTransform(mw) : (mw as unknown as MiddlewareHandler<Env>));
  }
  app.all("*", async (c) => {
    let incoming: Incoming = requestIncoming(c.req.raw, c.env.raw);
    const edit = c.env.edit;
    if (edit !== undefined) incoming = new EditedIncoming(incoming, edit);
    incoming.upgrade = c.env.upgrade;
    const result = await proxyToPool(pool, incoming, c.env.ex, options);
    if (result instanceof Response || result.upgraded === undefined) return toResponse(result, c.env.ex);
    // A 101 cannot be a web Response: the chain gets a stand-in, and the gateway switches if it comes back.
    c.env.upgraded = result.upgraded;
    return (c.env.tunnelAnswer = new Response(null, { status: 200 }));
  });
  return app;
}

/** A transform in a Hono chain: its request hook before `next()`, its response hook on `c.res` after. */
function honoTransform(t: Transform): MiddlewareHandler<Env> {
  return async (c, next) => {
    const ex = c.env.ex;
    let edit = c.env.edit;
    if (edit === undefined) {
      const url = c.req.raw.url;
      const pathStart = url.indexOf("/", url.indexOf("//") + 2);
      const target = pathStart < 0 ? "/" : url.slice(pathStart);
      const headers = c.req.raw.headers;
      // A Request made in-process may have no Host header: its URL's authority stands in.
      const host = headers.get("host") ?? url.slice(url.indexOf("//") + 2, pathStart < 0 ? undefined : pathStart);
      edit = c.env.edit = RequestEdit.of(ex, target, host, (n) => headers.get(n));
    }
    const answer = t.request?.(edit);
    edit.record(ex);
    if (answer instanceof Response) {
      // A transform's own answer is not rate limiting, unless it is the rate limit's 429.
      ex.transformAnswered = !isRateLimitDenial(answer);
      return respond(t, answer, edit);
    }
    await next();
    // A backend's 101 is a stand-in here (the gateway opens the tunnel): response edits skip it, as on the direct path.
    if (t.response !== undefined && c.res !== c.env.tunnelAnswer) {
      const res = new ResponseEdit(c.res);
      t.response(res, edit);
      if (res.response !== c.res) {
        // A copy (the headers were immutable): Hono's setter would merge the old headers back in.
        c.res = undefined as unknown as Response;
        c.res = res.response;
      }
    }
  };
}

function respond(t: Transform, answer: Response, edit: RequestEdit): Response {
  if (t.response === undefined) return answer;
  const res = new ResponseEdit(answer);
  t.response(res, edit);
  return res.response;
}
