/**
 * Fulcrum's public plugin API: the only module a strategy or middleware plugin imports, as
 * `import type { StrategyPlugin } from "fulcrum"`. Built-in strategies use exactly these types.
 *
 * Everything here is a type or a `declare`d value: the host supplies the values at run time, so
 * a plugin file next to the compiled binary works without node_modules. `fulcrum types` prints
 * this file and its parts (`api-request.ts`, `api-host.ts`, `api-middleware.ts`) as one `.d.ts`
 * (`declare module "fulcrum"`): they import only each other's types, and nothing else.
 *
 * @module
 */

import type { PluginApi } from "./api-host.ts";
import type { MiddlewareContext, MiddlewarePlugin } from "./api-middleware.ts";
import type { RequestInfo, Strategy } from "./api-request.ts";

export type * from "./api-request.ts";
export type * from "./api-host.ts";
export type * from "./api-middleware.ts";

/**
 * The default export of a strategy plugin file.
 *
 * @typeParam O The shape of `options` from the config.
 * @example
 * ```ts
 * import type { StrategyPlugin } from "fulcrum";
 * export default {
 *   kind: "strategy",
 *   name: "first",
 *   create() {
 *     return { pick: (backends) => backends[0] };
 *   },
 * } satisfies StrategyPlugin;
 * ```
 */
export interface StrategyPlugin<O = Record<string, unknown>> {
  /** Always `"strategy"`. */
  readonly kind: "strategy";
  /** Unique name; configs refer to built-ins by it (`strategy: round-robin`). */
  readonly name: string;
  /**
   * Build a strategy for one pool. Validate `options` here and throw a `TypeError` or
   * `RangeError` naming the option and the value received: the error is shown at start.
   */
  create(options: O, api: PluginApi): Strategy;
}

/**
 * The default export of a key plugin: computes a string key for a request, e.g. the tenant that
 * the built-in `rate-limit` middleware counts separately
 * (`rate-limit: { rate: 10/s, key: { plugin: ./tenant.ts } }`).
 *
 * @example
 * ```ts
 * import type { KeyPlugin } from "fulcrum";
 * export default {
 *   kind: "key",
 *   name: "tenant",
 *   create: () => (req) => req.headers.get("x-tenant") ?? undefined,
 * } satisfies KeyPlugin;
 * ```
 */
export interface KeyPlugin<O = Record<string, unknown>> {
  /** Always `"key"`. */
  readonly kind: "key";
  /** Unique name. */
  readonly name: string;
  /** Return the key function. `undefined` from it means "no key": the client IP is used. */
  create(options: O, api: PluginApi): (request: RequestInfo) => string | undefined;
}

/** One backend as a discovery source reports it, built like an entry of `pools.<name>.backends`. */
export interface DiscoveredBackend {
  /** Base URL with a host and port, e.g. `http://10.0.0.11:8080`. */
  readonly url: string;
  /** Relative weight, a whole number; 0 takes no new requests (a drain). @default 1 */
  readonly weight?: number;
  /** Stable id within the pool; `host:port` of the URL when absent. */
  readonly id?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * What a discovery plugin's `create()` returns: each value is the pool's complete backend list at
 * that moment. An async iterable (`async function*` yielding a list on each change), or a
 * subscription calling `update` per list and returning its stop function. A throw or `fail()`
 * keeps the pool's last good list (logged, counted); after a failure `create()` is called again
 * with backoff. An empty list keeps it too, unless the pool sets `discovery.empty_after`: then
 * empty lists for that long empty the pool. So give an empty list only when there are truly no
 * backends, and fail when you cannot tell.
 */
export type DiscoverySource =
  | AsyncIterable<readonly DiscoveredBackend[]>
  | { subscribe(update: (backends: readonly DiscoveredBackend[]) => void, fail: (error: unknown) => void): () => void };

/** The `api` of a discovery plugin's `create()`. */
export interface DiscoveryApi extends PluginApi {
  /** The pool the lists are for. */
  readonly pool: string;
  /** Aborted when the pool stops (reload, shutdown): pass it to `fetch` and watches. */
  readonly signal: AbortSignal;
}

/**
 * The default export of a discovery plugin: a pool's backends at run time
 * (`pools.web.discovery: { plugin: ./etcd.ts, options: {...} }`). The built-in `dns` uses it too.
 * @example
 * ```ts
 * import type { DiscoveryPlugin } from "fulcrum";
 * export default {
 *   kind: "discovery",
 *   name: "static",
 *   async *create(options: { urls: string[] }) { yield options.urls.map((url) => ({ url })); },
 * } satisfies DiscoveryPlugin<{ urls: string[] }>;
 * ```
 */
export interface DiscoveryPlugin<O = Record<string, unknown>> {
  readonly kind: "discovery";
  readonly name: string;
  /**
   * Build one pool's source (at start, on reload, after a failure). Validate `options` and throw
   * naming the option. Start network work when iterated, not here: `fulcrum check` calls it too.
   */
  create(options: O, api: DiscoveryApi): DiscoverySource;
}

/** Any plugin a file may export as its default. */
export type Plugin = StrategyPlugin<never> | MiddlewarePlugin<never> | KeyPlugin<never> | DiscoveryPlugin<never>;

// Run-time values of the "fulcrum" module. The host provides them (Bun: a virtual module; Deno:
// an import map), so a plugin next to the compiled binary needs no node_modules.

/**
 * The client's IP address as the listener saw it (the TCP peer, not `X-Forwarded-For`).
 * @example
 * ```ts
 * import { clientIp } from "fulcrum";
 * api.log.info("denied", { ip: clientIp(c) });
 * ```
 */
export declare function clientIp(c: MiddlewareContext): string;

/**
 * Hono's `HTTPException` (the host's copy): throw it from a middleware to answer with its status
 * instead of a 500.
 * @example
 * ```ts
 * import { HTTPException } from "fulcrum";
 * throw new HTTPException(401, { message: "missing token" });
 * ```
 */
export declare class HTTPException extends Error {
  constructor(status?: number, options?: { message?: string; res?: Response; cause?: unknown });
  readonly status: number;
  getResponse(): Response;
}

/** The host's Hono class (https://hono.dev), for plugins that compose a small Hono app. Typed loosely here. */
// deno-lint-ignore no-explicit-any
export declare const Hono: new (options?: Record<string, unknown>) => any;

/** Fulcrum's version, e.g. `"0.1.0"`. */
export declare const version: string;
