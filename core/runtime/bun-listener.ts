/**
 * The client-facing HTTP/1.1 listener on Bun, on raw TCP (`Bun.listen`), used instead of
 * `Bun.serve` for the proxy port.
 *
 * Why our own: with `Bun.serve` every request pays for a `Request` with its `Headers`, an
 * `AbortSignal`, a `getpeername()` for the client address and a `Response` whose body completes
 * outside the handler; measured on this machine that was 10–25 µs of a 50–80 µs request
 * (bench/README.md). Here a request is parsed once from bytes (core/http1/request.ts, as strict
 * as Bun.serve: smuggling-prone framing is refused) and the proxy's answer is written as bytes;
 * a `Request`/`Response` is made only for routes with middleware (Hono).
 *
 * One request at a time per connection: pipelined requests wait, buffered, until the one before
 * has been answered (RFC 9112 §9.3.2 keeps responses in order).
 *
 * The HTTP/1.1 itself is in core/listener/; this file binds it to `Bun.listen`.
 */
import type { ClientConn } from "../listener/connection.ts";
import { RawServer, type Listen } from "../listener/server.ts";
import { HTTP2_DEFAULTS, type Listener, type RawExchange, type ServeOptions, type ServeTls } from "./types.ts";
import { bunTls } from "./bun-tls.ts";

/** `Bun.listen` on this address, for {@link RawServer.listen}; TLS with `tls` (bun-tls.ts). */
function bunListen(hostname: string, port: number, reusePort: boolean, tls: ServeTls | undefined): Listen {
  return (handlers) => {
    // `reusePort` (SO_REUSEPORT, for workers) is accepted by Bun.listen as by Bun.serve, though
    // not in its types; without it a second process on the port fails, as it should. Half-open,
    // so a client that shuts down its sending side after its request still gets the answer.
    const secure = tls && bunTls(tls);
    const options: Bun.TCPSocketListenOptions<ClientConn> & { reusePort?: boolean } = {
      hostname,
      port,
      reusePort,
      allowHalfOpen: true,
      // Bun's sockets have the shape of TcpSocket (core/runtime/types.ts): handed over as they come, no wrapper.
      socket: secure ? ({ ...handlers, serverName: secure.serverName } as Bun.SocketHandler<ClientConn>) : handlers,
      data: undefined as unknown as ClientConn,
      ...(secure ? { tls: secure.options as Bun.TLSOptions } : {}),
    };
    const listener = Bun.listen<ClientConn>(options);
    secure?.bound(listener);
    return listener;
  };
}

/** Listen with our own HTTP/1.1 server; requests go to `options.raw`. */
export async function serveRaw(
  options: ServeOptions & { raw: (ex: RawExchange) => void },
  onError: (e: unknown) => void,
): Promise<Listener> {
  const server = new RawServer(
    options.raw,
    {
      maxBody: options.maxRequestBodySize >= Number.MAX_SAFE_INTEGER ? 0 : options.maxRequestBodySize,
      idleSeconds: options.idleTimeoutSeconds,
      // 0 (client_idle_timeout: 0) turns it off, as it turns the idle timer off.
      headerTimeoutMs: options.idleTimeoutSeconds * 1000,
    },
    onError,
    options.tls,
  );
  // HTTP/2: on a plain port with prior knowledge (h2c), on a TLS port when ALPN offers h2. Either
  // way the client's first bytes are the HTTP/2 preface, and the listener hands the connection over.
  if (options.tls !== undefined ? options.tls.alpn.includes("h2") : options.h2c === true) {
    // Loaded only for a listener that serves HTTP/2.
    const { H2Front } = await import("../http2/front.ts");
    const front = new H2Front(options.raw, {
      settings: options.http2 ?? HTTP2_DEFAULTS,
      maxBody: server.limits.maxBody,
      idleMs: options.idleTimeoutSeconds * 1000,
      scheme: options.tls !== undefined ? "https" : "http",
      onError,
      onAbuse: (clientIp, reason) => options.onWarning?.("closed an abusive HTTP/2 connection: {reason}", { client_ip: clientIp, reason }),
    });
    server.h2c = (conn, first) =>
      front.accept(conn.clientIp, (owner) => {
        const socket = conn.takeover(owner);
        return socket === undefined ? undefined : { socket, conn, tlsInfo: () => conn.tlsInfo() };
      }, first);
  }
  const listener = server.listen(bunListen(options.hostname, options.port, options.reusePort ?? false, options.tls));
  return {
    hostname: listener.hostname,
    port: listener.port,
    close: () => server.close(),
    forceClose: () => server.forceClose(),
  };
}
