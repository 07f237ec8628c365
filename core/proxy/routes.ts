/**
 * Routes: what a request matches is in route-match.ts (conditions and precedence); here each
 * route is built: its middleware as a Hono app in front of the proxy (chain.ts), or, when every
 * middleware is a {@link Transform} (or there is none), the direct path that makes no Request/Response.
 * Hono is imported only when a route needs the chain: a config without function middleware never loads it.
 */
import type { Hono } from "hono";
import type { RouteConfig } from "../config/schema.ts";
import type { Middleware, Transform } from "../plugins/api.ts";
import { isTransform } from "../plugins/registry.ts";
import type { Pool } from "../pool/pool.ts";
import type { Logging } from "../telemetry/log.ts";
import type { Env } from "./chain.ts";
import type { RouteOptions } from "./exchange.ts";
import { compileMatch, type RouteMatch } from "./route-match.ts";

export type { Env } from "./chain.ts";

type ChainModule = typeof import("./chain.ts");
let chainModule: ChainModule | undefined;
let loading: Promise<ChainModule> | undefined;

function loadChainModule(): Promise<ChainModule> {
  return loading ??= import("./chain.ts").then((m) => (chainModule = m));
}

/** Hono's HTTPException (a deliberate answer), once a chain is loaded: before, none can have been thrown by the host's class. */
export function isHttpException(e: unknown): boolean {
  return chainModule?.isHttpException(e) ?? false;
}

/** A route's Hono app, built on first use (the import is async); started at build time when the route has function middleware. */
export interface Chain {
  /** Undefined until loaded: then `await load()`. */
  readonly app: Hono<Env> | undefined;
  load(): Promise<Hono<Env>>;
}

export interface Route extends RouteMatch {
  /** Low-cardinality name for logs and spans: `host/path → pool` (with the route's other conditions). */
  readonly name: string;
  readonly pool: Pool;
  readonly chain: Chain;
  /** No middleware but transforms: the raw listener's requests go straight to the proxy, no Request/Response made. */
  readonly direct: boolean;
  /** The route's middleware when all are transforms (run by the gateway on the direct path); undefined otherwise. */
  readonly transforms: readonly Transform[] | undefined;
  /** Some of {@link transforms} edit the response: the backend's headers are copied for them. */
  readonly editsResponses: boolean;
  readonly options: RouteOptions;
}

export function makeRoute(
  rc: RouteConfig,
  index: number,
  pool: Pool,
  logging: Logging,
  middleware: readonly (Middleware | Transform)[],
  bodyTimeoutMs: number,
): Route {
  const allTransforms = middleware.every(isTransform);
  const upgrades = new Set(rc.upgrade);
  if (rc.websocket) upgrades.add("websocket");
  const options: RouteOptions = {
    retryNonIdempotent: rc.retry_non_idempotent,
    bodyTimeoutMs,
    direct: allTransforms,
    upgrades,
    tunnelIdleMs: rc.timeouts.tunnel_idle,
  };
  const chain = {
    app: undefined as Hono<Env> | undefined,
    load: async (): Promise<Hono<Env>> => {
      const m = chainModule ?? await loadChainModule();
      return (chain.app ??= m.buildChain(pool, logging, middleware, options));
    },
  };
  // Function middleware runs in the chain: load it now, so the first request does not wait for the import.
  if (!allTransforms) chain.load().catch((e) => logging.logger.error("route chain failed to load", { error: String(e) }));
  const match = compileMatch(rc.match, index);
  return {
    ...match,
    name: `${routeLabel(rc.match)} → ${pool.name}`,
    pool,
    chain,
    direct: allTransforms,
    transforms: allTransforms && middleware.length > 0 ? (middleware as Transform[]) : undefined,
    editsResponses: middleware.some((m) => isTransform(m) && m.response !== undefined),
    options,
  };
}

/** `host/path` and, when present, the other conditions: `*\/api ~^/v[0-9]+/ GET,HEAD x-env=canary ?v=2`. */
export function routeLabel(m: RouteConfig["match"]): string {
  let label = `${m.host?.toLowerCase() ?? "*"}${m.path}`;
  if (m.path_regex !== undefined) label += ` ~${m.path_regex}`;
  if (m.methods !== undefined) label += ` ${m.methods.join(",") || "(no methods)"}`;
  for (const [n, v] of Object.entries(m.headers ?? {})) label += ` ${n}=${v}`;
  for (const [n, v] of Object.entries(m.query ?? {})) label += ` ?${n}=${v}`;
  return label;
}
