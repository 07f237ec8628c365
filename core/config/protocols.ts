/**
 * The config keys of HTTP/2 and tunnels: the listener's map form (`listen: { address, h2c,
 * http2 }`) and a route's WebSocket and Upgrade keys. Built from schema.ts's units (passed in, so
 * that this file does not import schema.ts back).
 */
import { z } from "zod";

type Units = z.ZodType<number, unknown>;

/** timeouts.tunnel_idle of a route: 1h, like HAProxy's `timeout tunnel` set for WebSocket. */
export const TUNNEL_IDLE_DEFAULT = 3_600_000;

/** A listener's HTTP/2 settings, sent to clients in SETTINGS. */
function http2Schema(size: Units, positiveInt: () => Units) {
  return z.strictObject(
    {
      /** Streams a client may have open at once on one connection. */
      max_concurrent_streams: positiveInt().default(100),
      /** How much of a request body a client may send ahead on a stream (flow control). */
      initial_window_size: size
        .refine((n) => n >= 1024 && n <= 2 ** 31 - 1, { error: "must be from 1kib to 2gib - 1 byte" })
        .default(1024 * 1024),
      /** The largest request header list (name + value + 32 bytes each); larger ones get 431. */
      max_header_list_size: size.refine((n) => n >= 1024, { error: "must be at least 1kib" }).default(64 * 1024),
    },
    { error: "must be a map with max_concurrent_streams, initial_window_size and max_header_list_size" },
  );
}

export type Http2Config = z.output<ReturnType<typeof http2Schema>>;

/**
 * The proxy port: `host:port`, or a map with `address` and the listener's options. The map form
 * is where HTTP/2 is turned on for cleartext clients (`h2c: true`: prior knowledge, RFC 9113 §3.3).
 */
export function listenEntry(
  address: z.ZodType<{ hostname: string; port: number }, unknown>,
  size: Units,
  positiveInt: () => Units,
) {
  return z
    .preprocess(
      (v) => (typeof v === "string" || typeof v === "number" ? { address: v } : v),
      z.strictObject(
        {
          address,
          /** Serve HTTP/2 with prior knowledge on this cleartext listener, next to HTTP/1.1 (told apart by the client's first bytes). */
          h2c: z.boolean({ error: "must be true or false" }).default(false),
          http2: http2Schema(size, positiveInt).prefault({}),
        },
        { error: "must be host:port, :port, a port number, or a map with address, h2c and http2" },
      ),
    )
    .transform((l): { hostname: string; port: number; h2c?: boolean; http2?: Http2Config } => ({
      ...l.address,
      h2c: l.h2c,
      http2: l.http2,
    }));
}

/** A route's tunnel keys: `websocket`, `upgrade` and `timeouts.tunnel_idle`. */
export function tunnelKeys(duration: Units) {
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
