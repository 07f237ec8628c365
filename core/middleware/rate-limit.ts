/**
 * The built-in `rate-limit` middleware: a token bucket per client key. Registered like any user
 * middleware plugin (main.ts), configured per route:
 *
 *   middleware:
 *     - rate-limit: { rate: 100/s, burst: 200, key: client-ip, trusted_proxies: [10.0.0.0/8] }
 *
 * A denied request gets 429 with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit`
 * headers (draft-ietf-httpapi-ratelimit-headers-10/11 syntax: `"default";q=200;w=2` and
 * `"default";r=0;t=2`); allowed responses carry them too unless `headers: false`.
 *
 * With `store: NAME` the buckets live in that store (a Redis shared by several instances, see
 * core/stores/) instead of this process; when the store cannot answer within its `timeout`, its
 * `on_error` decides: `allow` lets the request through, `deny` answers 503.
 */
import type {
  Middleware,
  MiddlewareContext,
  MiddlewarePlugin,
  PluginApi,
  RequestInfo,
  Transform,
  TransformRequest,
  TransformResponse,
} from "../plugins/api.ts";
import { parseDuration } from "../config/units.ts";
import { FailureReporter } from "../plugins/isolate.ts";
import { clientAddress } from "./client-ip.ts";
import { TokenBuckets } from "./token-buckets.ts";
import type { SharedStore } from "../stores/set.ts";
import type { SharedDecision } from "../stores/limiter.ts";

export interface RateLimitOptions {
  /** Sustained rate: `100/s`, `6000/m`, `50000/h`, or `N/<duration>` such as `10/30s`. Required. */
  rate: string;
  /** Bucket size (requests allowed at once). @default the rate's count, e.g. 100 for `100/s` */
  burst?: number;
  /**
   * What a bucket belongs to: `client-ip` (default), `header:NAME` (falls back to the client IP
   * when the header is absent), or `{ plugin: ./key.ts, options }` for a key plugin.
   */
  key?: string | { name: string; options?: unknown };
  /** Peers whose `X-Forwarded-For` is believed (IPs or CIDRs). @default [] */
  trusted_proxies?: string[];
  /** Hard cap on keys tracked; the least recently seen are forgotten beyond it. @default 100000 */
  max_keys?: number;
  /** Policy name in the `RateLimit-Policy` / `RateLimit` headers. @default "default" */
  policy?: string;
  /** Add `RateLimit-Policy` and `RateLimit` to allowed responses too. @default true */
  headers?: boolean;
  /** A store declared under the top-level `stores` holding the buckets for every instance. @default local buckets */
  store?: string;
}

const KNOWN = ["rate", "burst", "key", "trusted_proxies", "max_keys", "policy", "headers", "store"];

/** The host gives built-ins the config's stores this way (not part of the public plugin API yet). */
type WithStores = { store?: (name: string) => SharedStore | undefined };

/** `100/s` → 100 tokens per second; undefined when malformed. */
export function parseRate(text: string): { perSecond: number; count: number } | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(String(text));
  if (!m) return undefined;
  const count = Number(m[1]);
  const ms = parseDuration(`${m[2] || "1"}${m[3]}`);
  if (!ms || count <= 0) return undefined;
  return { perSecond: (count * 1000) / ms, count };
}

type Peer = { env?: { ex?: { clientIp?: string } } };

/** What both forms share: the options checked, the buckets, the header values. */
interface Limiter {
  buckets: TokenBuckets;
  policy: string;
  policyHeader: string;
  addHeaders: boolean;
  address: (peer: string, forwardedFor: string | null) => string;
  ratePerSecond: number;
  burst: number;
  maxKeys: number;
}

/**
 * Create the function form (a key plugin, or buckets in a store); `now` (milliseconds) is
 * injectable for fake-time tests.
 */
export function createRateLimit(options: RateLimitOptions, api: PluginApi, now: () => number = () => performance.now()): Middleware {
  const { buckets, policy, policyHeader, addHeaders, address, ratePerSecond, burst, maxKeys } = limiter(options, now);
  const ip = (c: MiddlewareContext) => address((c as Peer).env?.ex?.clientIp ?? "", c.req.raw.headers.get("x-forwarded-for"));
  const keyOf = keyFunction(options.key ?? "client-ip", ip, api);

  const store = sharedStore(options.store, api as PluginApi & WithStores);
  if (store) {
    const spec = typeof options.key === "object" ? `k=${options.key.name}` : options.key ?? "client-ip";
    const shared = store.limiter(`${policy}:${options.rate}:${burst}:${spec}`, { ratePerSecond, burst, maxKeys });
    return async (c, next) => {
      const taken = shared.take(keyOf(c));
      const d: SharedDecision = taken instanceof Promise ? await taken : taken;
      if (d.outcome === "error") {
        if (store.onError === "deny") {
          return new Response("rate limit store unavailable\n", { status: 503, headers: { "content-type": "text/plain; charset=utf-8" } });
        }
        return next();
      }
      const limit = `"${policy}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`;
      if (d.outcome === "denied") return tooMany(policyHeader, limit, d.retryAfterMs);
      await next();
      if (addHeaders) {
        c.res.headers.set("ratelimit-policy", policyHeader);
        c.res.headers.set("ratelimit", limit);
      }
    };
  }

  return async (c, next) => {
    const d = buckets.take(keyOf(c));
    // `d` is shared by all requests: read it before awaiting.
    const limit = `"${policy}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`;
    if (!d.allowed) return tooMany(policyHeader, limit, d.retryAfterMs);
    await next();
    if (addHeaders) {
      c.res.headers.set("ratelimit-policy", policyHeader);
      c.res.headers.set("ratelimit", limit);
    }
  };
}

/**
 * The same limit as a {@link Transform}, for a key by client address or header: a route whose
 * middleware are all transforms stays on the proxy's direct path (no web Request or Response),
 * so a limit that is not reached costs a route ~1.4 µs instead of the Request/Response path.
 * Key plugins take the function form (their RequestInfo carries a `Headers`).
 */
export function createRateLimitTransform(options: RateLimitOptions, now: () => number = () => performance.now()): Transform {
  const { buckets, policy, policyHeader, addHeaders, address } = limiter(options, now);
  const spec = options.key ?? "client-ip";
  const header = typeof spec === "string" && spec.startsWith("header:") ? spec.slice("header:".length).toLowerCase() : undefined;
  if (spec !== "client-ip" && (header === undefined || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(header))) {
    throw new TypeError(`key must be client-ip, header:NAME or { plugin: ./key.ts }, got ${JSON.stringify(spec)}`);
  }
  const ip = (req: TransformRequest) => address(req.clientIp, req.header("x-forwarded-for") ?? null);
  // The limit of each allowed request, for its response hook (the same request object).
  const limits = new WeakMap<TransformRequest, string>();
  return {
    request(req) {
      let key: string;
      if (header === undefined) key = ip(req);
      else {
        const v = req.header(header);
        key = v === undefined ? `ip:${ip(req)}` : `h:${v}`;
      }
      const d = buckets.take(key);
      const limit = `"${policy}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`;
      if (!d.allowed) return tooMany(policyHeader, limit, d.retryAfterMs);
      if (addHeaders) limits.set(req, limit);
    },
    ...(addHeaders
      ? {
        response(res: TransformResponse, req: TransformRequest) {
          const limit = limits.get(req);
          if (limit === undefined) return;
          res.setHeader("ratelimit-policy", policyHeader);
          res.setHeader("ratelimit", limit);
        },
      }
      : {}),
  };
}

/** The 429s this middleware answered: `fulcrum_rate_limited_total` counts these, not another transform's 429. */
const DENIALS = new WeakSet<Response>();

/** Whether `r` is a rate limit's 429 (the gateway counts it as rate limited). */
export function isRateLimitDenial(r: Response): boolean {
  return DENIALS.has(r);
}

function tooMany(policyHeader: string, limit: string, retryAfterMs: number): Response {
  const r = new Response("too many requests\n", {
    status: 429,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
      "ratelimit-policy": policyHeader,
      ratelimit: limit,
    },
  });
  DENIALS.add(r);
  return r;
}

function limiter(options: RateLimitOptions, now: () => number): Limiter {
  if (!options || typeof options !== "object") throw new TypeError(`options must be a map with rate, got ${JSON.stringify(options)}`);
  for (const k of Object.keys(options)) {
    if (!KNOWN.includes(k)) throw new TypeError(`unknown option "${k}" (known: ${KNOWN.join(", ")})`);
  }
  const rate = parseRate(options.rate);
  if (!rate) throw new RangeError(`rate must be like 100/s, 6000/m or 10/30s, got ${JSON.stringify(options.rate)}`);
  const burst = options.burst ?? Math.max(1, Math.ceil(rate.count));
  if (!Number.isInteger(burst) || burst < 1) throw new RangeError(`burst must be a positive integer, got ${JSON.stringify(options.burst)}`);
  const maxKeys = options.max_keys ?? 100_000;
  if (!Number.isInteger(maxKeys) || maxKeys < 1)
    throw new RangeError(`max_keys must be a positive integer, got ${JSON.stringify(options.max_keys)}`);
  const trusted = options.trusted_proxies ?? [];
  if (!Array.isArray(trusted)) throw new TypeError(`trusted_proxies must be a list of IPs or CIDRs, got ${JSON.stringify(trusted)}`);
  const policy = options.policy ?? "default";
  if (typeof policy !== "string" || !/^[\w.-]+$/.test(policy))
    throw new RangeError(`policy must be a word such as "default", got ${JSON.stringify(policy)}`);
  const addHeaders = options.headers ?? true;
  return {
    buckets: new TokenBuckets({ ratePerSecond: rate.perSecond, burst, maxKeys, now }),
    policy,
    policyHeader: `"${policy}";q=${burst};w=${Math.max(1, Math.ceil(burst / rate.perSecond))}`,
    addHeaders,
    address: clientAddress(trusted),
    ratePerSecond: rate.perSecond,
    burst,
    maxKeys,
  };
}

/**
 * The store named by `store`. A host that offers no stores at all (the cluster primary, which
 * serves no requests, or `fulcrum check`) gets local buckets. The schema checks the name is declared.
 */
function sharedStore(name: unknown, api: PluginApi & WithStores): SharedStore | undefined {
  if (name === undefined) return undefined;
  if (typeof name !== "string") throw new TypeError(`store must name a store declared under stores, got ${JSON.stringify(name)}`);
  if (!api.store) return undefined;
  const store = api.store(name);
  if (!store) throw new RangeError(`store "${name}" is not declared under stores`);
  return store;
}

function keyFunction(
  spec: RateLimitOptions["key"],
  ip: (c: MiddlewareContext) => string,
  api: PluginApi,
): (c: MiddlewareContext) => string {
  if (spec === "client-ip") return ip;
  if (typeof spec === "string" && /^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(spec)) {
    const name = spec.slice("header:".length).toLowerCase();
    return (c) => {
      const v = c.req.raw.headers.get(name);
      return v === null ? `ip:${ip(c)}` : `h:${v}`;
    };
  }
  if (spec && typeof spec === "object" && typeof (spec as { name?: unknown }).name === "string") {
    const fn = api.key(spec.name, spec.options ?? {});
    // A key plugin that throws costs its request nothing but the fallback to the client IP.
    const failures = new FailureReporter(spec.name, api.log);
    return (c) => {
      const r = c.req.raw;
      const info: RequestInfo = {
        method: r.method,
        path: c.req.path,
        host: r.headers.get("host") ?? "",
        clientIp: ip(c),
        headers: r.headers,
      };
      let k: string | undefined;
      try {
        k = fn(info);
      } catch (e) {
        failures.report("key function threw", e);
      }
      return typeof k === "string" ? `k:${k}` : `ip:${info.clientIp}`;
    };
  }
  throw new TypeError(`key must be client-ip, header:NAME or { plugin: ./key.ts }, got ${JSON.stringify(spec)}`);
}

export default {
  kind: "middleware",
  name: "rate-limit",
  // A key plugin or a store (an async decision) needs the function form; a local limit keyed by
  // address or header is a transform, so its route stays on the direct path.
  create: (options, api) =>
    options && typeof options === "object" && ((typeof options.key === "object" && options.key !== null) || options.store !== undefined)
      ? createRateLimit(options, api)
      : createRateLimitTransform(options),
} satisfies MiddlewarePlugin<RateLimitOptions>;
