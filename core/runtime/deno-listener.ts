/**
 * The client-facing HTTP/1.1 listener on Deno, on raw TCP (`Deno.listen`): the same listener as
 * on Bun (core/listener/, bun-listener.ts), its connections adapted by deno-tcp.ts. Used for plain
 * HTTP/1.1 ports; TLS and h2c ports stay on `Deno.serve` (deno.ts). A request is parsed once from
 * bytes and the proxy's answer written as bytes, without a `Request` or `Response` for routes
 * without middleware.
 */
import type { ClientConn } from "../listener/connection.ts";
import { type BoundListener, type Listen, RawServer } from "../listener/server.ts";
import type { Listener, RawExchange, ServeOptions, TcpHandlers } from "./types.ts";
import { type DenoConn, DenoSocket } from "./deno-tcp.ts";

// deno-lint-ignore no-explicit-any
declare const Deno: any;

function denoListen(hostname: string, port: number, reusePort: boolean): Listen {
  return (handlers: TcpHandlers<ClientConn>): BoundListener => {
    const listener = Deno.listen({ hostname, port, transport: "tcp", ...(reusePort ? { reusePort } : {}) });
    const open = new Set<DenoSocket<ClientConn>>();
    let stopped = false;
    void (async () => {
      for (;;) {
        let conn: DenoConn;
        try {
          conn = await listener.accept();
        } catch {
          if (stopped) return;
          continue; // a connection that failed before it was accepted (EMFILE, a reset)
        }
        const socket = new DenoSocket<ClientConn>(conn, handlers, undefined as unknown as ClientConn, true);
        open.add(socket);
        socket.onClosed = () => open.delete(socket);
        socket.start();
      }
    })();
    return {
      hostname: listener.addr.hostname,
      port: listener.addr.port,
      stop(closeActiveConnections) {
        if (stopped) return;
        stopped = true;
        listener.close();
        if (closeActiveConnections) { for (const s of [...open]) s.terminate(); }
      },
    };
  };
}

/** Listen with our own HTTP/1.1 server on a plain port; requests go to `options.raw`. */
export function serveRawDeno(options: ServeOptions & { raw: (ex: RawExchange) => void }, onError: (e: unknown) => void): Listener {
  const server = new RawServer(
    options.raw,
    {
      maxBody: options.maxRequestBodySize >= Number.MAX_SAFE_INTEGER ? 0 : options.maxRequestBodySize,
      idleSeconds: options.idleTimeoutSeconds,
      headerTimeoutMs: options.idleTimeoutSeconds * 1000,
    },
    onError,
    undefined,
  );
  const listener = server.listen(denoListen(options.hostname, options.port, options.reusePort ?? false));
  return {
    hostname: listener.hostname,
    port: listener.port,
    close: () => server.close(),
    forceClose: () => server.forceClose(),
  };
}
