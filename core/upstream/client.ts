/**
 * The upstream HTTP/1.1 client: the choice of implementation (its contract is in types.ts,
 * re-exported here for the proxy, the pools, telemetry and the runtimes).
 *
 * Why not `fetch`: Bun's fetch invents `User-Agent` and `Accept` headers, silently re-sends
 * GET/HEAD/PUT/DELETE on a dead pooled connection, shares 64 idle connections among all
 * backends and has no connect timeout. Two clients keep this contract instead:
 * - `raw-client.ts`: our own HTTP/1.1 client on the runtime's raw TCP (Bun's), the fast path;
 * - `node.ts`: node:http (Bun and Deno both provide it), the default elsewhere.
 * Both send exactly the headers given, never retry on their own except the one deliberate
 * stale-connection retry (see `sendUpstream`), and keep a pool per backend whose size we set.
 */
import {
  type PoolOptions,
  type UpstreamAgent,
  type UpstreamClient,
  type UpstreamRequest,
  type UpstreamResponse,
  type UpstreamTarget,
} from "./types.ts";

export { UpstreamError } from "./types.ts";
export type {
  AbortLike,
  PoolOptions,
  TunnelEnd,
  TunnelEvents,
  UpstreamAgent,
  UpstreamClient,
  UpstreamErrorKind,
  UpstreamRequest,
  UpstreamResponse,
  UpstreamTarget,
  UpstreamTls,
} from "./types.ts";

/**
 * node.ts's client, loaded at a backend's first request: node:http is ~4 MiB and ~15 ms to load,
 * and a process whose runtime brings its own client (Bun) or that never proxies (the primary of
 * workers, whose pools only health-check) does not need it.
 */
const lazyNodeClient: UpstreamClient = (target, options) => {
  let agent: UpstreamAgent | undefined;
  let loading: Promise<UpstreamAgent> | undefined;
  const load = () => (loading ??= import("./node.ts").then((m) => (agent = m.nodeUpstreamClient(target, options))));
  return {
    send: (req) => (agent ? agent.send(req) : load().then((a) => a.send(req))),
    // Not loaded yet: no connection to close.
    destroy: () => agent?.destroy(),
  };
};

let client: UpstreamClient = lazyNodeClient;

/** Select the client for pools created from now on (called once, when the runtime is chosen). */
export function useUpstreamClient(c: UpstreamClient): void {
  client = c;
}

/** Keep-alive connection pool for one backend. */
export function createAgent(target: UpstreamTarget, options: PoolOptions): UpstreamAgent {
  return client(target, options);
}

/**
 * Send one request to one backend. Resolves at the response headers; rejects with
 * {@link UpstreamError}. A request without a body whose reused keep-alive connection fails
 * before any response byte (closed by the backend while idle) is re-sent once on a new
 * connection: deliberate and bounded, unlike Bun fetch's silent retry. Never one with a body.
 */
export function sendUpstream(_target: UpstreamTarget, agent: UpstreamAgent, req: UpstreamRequest): Promise<UpstreamResponse> {
  return agent.send(req);
}
