/**
 * The config keys of HTTP/2 and tunnels: a listener's `h2c` and `http2` (core/config/tls.ts puts
 * them in each listener's map) and a route's WebSocket and Upgrade keys.
 */
import { z } from "zod";
import { parseDuration, parseSize } from "./units.ts";
import { TUNNEL_IDLE_DEFAULT } from "./defaults.ts";

const DURATION = "must be a duration like 250ms, 5s or 1m";
const duration = z
  .string({ error: DURATION })
  .refine((s) => parseDuration(s) !== undefined, { error: DURATION })
  .transform((s) => parseDuration(s)!);

const SIZE = "must be a size like 64kib or 1mib";
const size = z
  .union([z.string(), z.number()], { error: SIZE })
  .refine((s) => parseSize(s) !== undefined, { error: SIZE })
  .transform((s) => parseSize(s)!);

const POSITIVE = "must be a positive integer";

export { TUNNEL_IDLE_DEFAULT };

/** A listener's HTTP/2 settings, sent to clients in SETTINGS (h2c, and h2 by ALPN on TLS listeners). */
export const http2Schema = z.strictObject(
  {
    /** Streams a client may have open at once on one connection. */
    max_concurrent_streams: z.number({ error: POSITIVE }).int({ error: POSITIVE }).positive({ error: POSITIVE }).default(100),
    /** How much of a request body a client may send ahead on a stream (flow control). */
    initial_window_size: size
      .refine((n) => n >= 1024 && n <= 2 ** 31 - 1, { error: "must be from 1kib to 2gib - 1 byte" })
      .default(1024 * 1024),
    /** The largest request header list (name + value + 32 bytes each); larger ones get 431. */
    max_header_list_size: size.refine((n) => n >= 1024, { error: "must be at least 1kib" }).default(64 * 1024),
  },
  { error: "must be a map with max_concurrent_streams, initial_window_size and max_header_list_size" },
);

export type Http2Config = z.output<typeof http2Schema>;

/** A listener's HTTP/2 keys, for its map in `listen` (core/config/tls.ts). */
export const listenerHttp2Keys = {
  /** Serve HTTP/2 with prior knowledge on this cleartext listener, next to HTTP/1.1 (told apart by the client's first bytes). */
  h2c: z.boolean({ error: "must be true or false" }).default(false),
  http2: http2Schema.prefault({}),
};

/** A route's tunnel keys: `websocket`, `upgrade` and `timeouts.tunnel_idle`. */
export function tunnelKeys() {
  return {
    /** Pass WebSocket upgrades through as tunnels (RFC 6455); false drops the Upgrade header. */
    websocket: z.boolean({ error: "must be true or false" }).default(true),
    /** Other Upgrade protocols passed through as tunnels (h2c, custom ones); any other is dropped as hop-by-hop. */
    upgrade: z
      .array(
        z.string({ error: "must be a protocol name such as h2c" }).regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, {
          error: "must be a protocol name such as h2c (a token, without a version)",
        }).transform((s) => s.toLowerCase()),
        { error: "must be a list of protocol names" },
      )
      .default([]),
    timeouts: z
      .strictObject(
        {
          /** A tunnel (WebSocket) with no bytes either way for this long is closed; separate from request timeouts. */
          tunnel_idle: duration.refine((ms) => ms > 0, { error: "must be more than 0" }).default(TUNNEL_IDLE_DEFAULT),
        },
        { error: "must be a map with tunnel_idle" },
      )
      .prefault({}),
  };
}
