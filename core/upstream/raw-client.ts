/**
 * Our own upstream HTTP/1.1 client on raw TCP: a keep-alive pool per backend (raw-pool.ts),
 * strict response parsing (raw-response.ts, ../http1/), streaming both ways with backpressure.
 * The runtime brings the TCP connect function, so nothing here touches a runtime's API: Bun's
 * runtime (core/runtime/bun.ts) passes one that calls `Bun.connect`.
 *
 * Why our own: node:http on Bun cost ~190 µs of CPU a request in a profile, and Bun's fetch
 * cannot be made to send exactly our headers or to pool per backend (see client.ts).
 *
 * One request at a time per connection (no pipelining). A connection goes back to the pool
 * only after its response was read to the end with nothing after it, the request body was
 * fully sent, and neither side asked to close.
 */
import type { PoolOptions, UpstreamClient, UpstreamTarget } from "./types.ts";
import type { TcpConnect } from "../runtime/types.ts";
import { RawPool } from "./raw-pool.ts";

export { setPartCopyLimit, setWholeResponseLimit } from "./raw-limits.ts";

/** The raw upstream client over the runtime's `connect`: one {@link RawPool} per backend. */
export function rawUpstreamClient(connect: TcpConnect): UpstreamClient {
  return (target: UpstreamTarget, options: PoolOptions) => new RawPool(target, options, connect);
}
