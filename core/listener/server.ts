// A port's connections, limits and close, with the socket events; the runtime binds them to its sockets (Listen), so nothing here touches Bun.
import { Buffer } from "node:buffer";
import type { RawExchange, TcpHandlers, TcpSocket } from "../runtime/types.ts";
import { ClientConn, MAX_PENDING, type ConnServer, type Limits } from "./connection.ts";
import { Body } from "./request.ts";

/** A bound port, as the runtime's listen function returns it (Bun's `TCPSocketListener` has this shape). */
export interface BoundListener {
  readonly hostname: string;
  readonly port: number;
  /** Stop accepting; `true` also closes the open connections. */
  stop(closeActiveConnections?: boolean): void;
}

/**
 * The runtime's listen (core/runtime/bun-listener.ts): bind the port, deliver the sockets' events
 * to `handlers`. Half-open (a client that shuts down its sending side after its request still
 * gets the answer), `data` left for the `open` handler to set.
 */
export type Listen = (handlers: TcpHandlers<ClientConn>) => BoundListener;

/** A TLS port's handshake rules (the runtime does the TLS; the connections are the same HTTP/1.1 as on a plain port). */
export interface TlsHooks {
  /** A client that has not finished its handshake this long after connecting is closed. */
  readonly handshakeTimeoutMs: number;
  /** A handshake succeeded, failed (the runtime's error), or timed out. */
  handshake(ok: boolean, error: Error | "timeout" | undefined, clientIp: string): void;
}

export class RawServer implements ConnServer {
  readonly conns = new Set<ClientConn>();
  closing = false;
  /** Set by the runtime on an h2c listener (core/http2/). */
  h2c: ((conn: ClientConn, first: Buffer) => void) | undefined;
  #listener: BoundListener | undefined;
  #closed: (() => void) | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  readonly scheme: "http" | "https";

  constructor(
    readonly handler: (ex: RawExchange) => void,
    readonly limits: Limits,
    readonly onError: (e: unknown) => void,
    /** A TLS port: the runtime's sockets are TLS sockets, reported by `handshake` once established. */
    readonly tls?: TlsHooks,
  ) {
    this.scheme = tls ? "https" : "http";
  }

  listen(listen: Listen): BoundListener {
    // The socket handlers reach the server through this name (they are not methods of it).
    // deno-lint-ignore no-this-alias
    const server = this;
    const handlers: TcpHandlers<ClientConn> = {
      open(s) {
        const conn = new ClientConn(server);
        conn.socket = s;
        conn.clientIp = s.remoteAddress ?? "";
        s.data = conn;
        conn.sniff = server.h2c !== undefined;
        s.setNoDelay?.(true);
        s.timeout(server.limits.idleSeconds);
        server.conns.add(conn);
        if (server.tls) conn.handshakeSince = performance.now();
        if (server.closing) conn.end();
      },
      data(s, chunk) {
        const conn = s.data;
        const buf = chunk as Buffer;
        if (conn.owner !== undefined) return conn.owner.onData(buf);
        const ex = conn.current;
        if (
          ex !== undefined && (ex.bodyState === Body.Length || ex.bodyState === Body.Chunked || ex.bodyState === Body.Failed) &&
          conn.pending === undefined
        ) {
          return ex.feed(buf);
        }
        conn.pending = conn.pending === undefined ? buf : Buffer.concat([conn.pending, buf]);
        if (conn.current === undefined) conn.drive();
        else if (conn.pending.length > MAX_PENDING) conn.pause();
      },
      drain(s) {
        const conn = s.data;
        if (conn.owner !== undefined) return conn.owner.onDrain();
        conn.flush();
      },
      end(s) {
        // The client's FIN. A client that closed (gave up, timed out, cancelled) sends the same FIN
        // as one that only half-closed, and only a write would tell them apart, so a request still
        // being answered is aborted now, as Bun.serve and nginx do: its backend is released at
        // once instead of when it answers (a long poll, an idle event stream: maybe never).
        // Without a request in flight, what was already written still goes out, then the close.
        const conn = s.data;
        if (conn.owner !== undefined) return conn.owner.onEnd();
        if (conn.current !== undefined) return conn.destroy();
        conn.end();
      },
      close(s, error) {
        const owner = s.data?.owner;
        if (owner !== undefined) return owner.onClose(error?.message);
        s.data?.destroy();
      },
      // What a handler above threw (socket errors come to `close`): a bug, reported, and the
      // connection closed.
      error(s, error) {
        server.onError(error);
        const owner = s.data?.owner;
        if (owner !== undefined) return owner.onClose(error.message);
        s.data?.destroy();
      },
      timeout(s) {
        const conn = s.data;
        if (conn.owner !== undefined) return;
        // Nothing written could leave for client_idle_timeout: the client stopped reading.
        if (conn.out !== undefined) return conn.destroy();
        if (conn.current !== undefined) return;
        if (conn.pending !== undefined) return conn.reject(408, "request head timeout");
        conn.destroy();
      },
    };
    if (this.tls) handlers.handshake = (s, ok, error) => server.#handshake(s, ok, error);
    const listener = listen(handlers);
    this.#listener = listener;
    // A head trickling in byte by byte keeps the idle timer happy: bound it by a deadline. So is
    // a TLS handshake (a client that connects and never speaks, or trickles its ClientHello).
    const tls = this.tls;
    if (this.limits.headerTimeoutMs === 0 && !tls) return listener; // client_idle_timeout: 0, no timeouts
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const c of this.conns) {
        if (c.handshakeSince > 0) {
          if (now - c.handshakeSince > tls!.handshakeTimeoutMs) {
            c.handshakeSince = -1; // reported here, not again by the handshake event the close brings
            tls!.handshake(false, "timeout", c.clientIp);
            c.destroy();
          }
        } else if (
          c.headSince > 0 && c.current === undefined && this.limits.headerTimeoutMs > 0 && now - c.headSince > this.limits.headerTimeoutMs
        ) c.reject(408, "request head timeout");
      }
    }, 1000);
    (this.#sweep as { unref?: () => void }).unref?.();
    return listener;
  }

  #handshake(s: TcpSocket<ClientConn>, ok: boolean, error: Error | null): void {
    const conn = s.data;
    if (conn === undefined || conn.handshakeSince < 0) return;
    conn.handshakeSince = 0;
    this.tls!.handshake(ok, ok ? undefined : (error ?? new Error("handshake failed")), conn.clientIp);
    if (!ok) conn.destroy();
  }

  checkClosed(): void {
    if (this.closing && this.conns.size === 0 && this.#closed) {
      const f = this.#closed;
      this.#closed = undefined;
      f();
    }
  }

  /** Stop accepting; idle connections close now, busy ones after their answer. */
  close(): Promise<void> {
    this.closing = true;
    this.#listener?.stop(false);
    clearInterval(this.#sweep);
    const done = new Promise<void>((r) => (this.#closed = r));
    // Tunnels run on until they end or shutdown_timeout; an HTTP/2 session says GOAWAY.
    for (const c of [...this.conns]) {
      if (c.owner !== undefined) c.owner.onShutdown?.();
      else if (c.current === undefined) c.end();
    }
    this.checkClosed();
    return done;
  }

  forceClose(): Promise<void> {
    this.closing = true;
    clearInterval(this.#sweep);
    // Before the listener closes them itself, so that a tunnel learns it was the proxy.
    for (const c of [...this.conns]) c.destroy();
    this.#listener?.stop(true);
    this.checkClosed();
    return Promise.resolve();
  }
}
