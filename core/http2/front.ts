/**
 * HTTP/2 on sockets the HTTP/1.1 listener hands over (h2c with prior knowledge: the client's
 * first bytes are the HTTP/2 preface; or, on a TLS listener, ALPN "h2"), served by Fulcrum's own
 * HTTP/2 layer (conn.ts): each stream becomes an {@link H2Exchange} for the gateway.
 */
import type { Buffer } from "node:buffer";
import type { Http2Settings, RawExchange, TcpSocket, TlsInfo } from "../runtime/types.ts";
import { type Front, H2Connection, type Taken } from "./conn.ts";
import type { H2Head } from "./headers.ts";
import type { RequestConn } from "./request.ts";
import type { H2Stream } from "./stream.ts";
import { type ExchangeConn, H2Exchange } from "./exchange.ts";

export interface H2Options {
  settings: Http2Settings;
  /** limits.max_request_body (0: none). */
  maxBody: number;
  /** A connection with no stream open for this long is closed with GOAWAY (limits.client_idle_timeout; 0: never). */
  idleMs: number;
  /** "https" on a TLS listener (h2 by ALPN): X-Forwarded-Proto, url.scheme. */
  scheme: "http" | "https";
  onError: (e: unknown) => void;
  /** A connection closed for abuse (guard.ts), with the client and the reason. */
  onAbuse?: (clientIp: string, reason: string) => void;
}

/** Streams waiting for a client that sent no WINDOW_UPDATE (nor SETTINGS) for this long: a window that never opens. */
const STALL_MS = 10_000;

/** What the socket's events go to (core/listener/upgrade.ts SocketOwner). */
interface Owner {
  onData(chunk: Buffer): void;
  onDrain(): void;
  onEnd(): void;
  onClose(error?: string): void;
  onShutdown(): void;
}

/** A connection's side of its exchanges. */
class ClientSide implements ExchangeConn {
  constructor(
    readonly c: H2Connection,
    readonly front: H2Front,
    readonly tlsInfo: () => TlsInfo | undefined,
  ) {}
  get clientIp(): string {
    return this.c.clientIp;
  }
  get scheme(): "http" | "https" {
    return this.front.options.scheme;
  }
  get maxBody(): number {
    return this.front.maxBody;
  }
  completed(): void {
    this.c.answered++;
  }
  premature(): void {
    this.c.premature();
  }
  onError(e: unknown): void {
    this.front.options.onError(e);
  }
}

export class H2Front implements Front {
  readonly conns = new Set<H2Connection>();
  readonly settings: Http2Settings;
  readonly maxBody: number;
  #sides = new WeakMap<RequestConn, ClientSide>();
  #queue: H2Exchange[] = [];
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly handler: (ex: RawExchange) => void,
    readonly options: H2Options,
  ) {
    this.settings = options.settings;
    this.maxBody = options.maxBody;
  }

  /**
   * Serve HTTP/2 on a socket: `takeover` hands it over (the listener's connection stops reading
   * HTTP/1.1) and returns it; `first` are the bytes already read (the preface, maybe more).
   */
  accept(
    clientIp: string,
    takeover: (owner: Owner) => { socket: TcpSocket<unknown>; conn: Taken; tlsInfo?: () => TlsInfo | undefined } | undefined,
    first: Buffer | undefined,
  ): void {
    // The socket's events go to the connection once it exists (the takeover needs its owner first).
    const ref: { c?: H2Connection } = {};
    const owner: Owner = {
      onData: (b) => ref.c?.onData(b),
      onDrain: () => ref.c?.onDrain(),
      onEnd: () => ref.c?.onEnd(),
      onClose: (e) => ref.c?.onClose(e),
      onShutdown: () => ref.c?.onShutdown(),
    };
    const taken = takeover(owner);
    if (taken === undefined) return;
    const c = (ref.c = new H2Connection(this, taken.socket, taken.conn, clientIp));
    this.conns.add(c);
    this.#sides.set(c, new ClientSide(c, this, taken.tlsInfo ?? (() => undefined)));
    if (first !== undefined && first.length > 0) c.onData(first);
    this.#watch();
  }

  request(c: RequestConn, s: H2Stream, head: H2Head): void {
    this.#queue.push(new H2Exchange(s, head, this.#sides.get(c)!));
  }

  dispatch(): void {
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    for (const ex of q) {
      if (ex.stream.closed) continue;
      try {
        this.handler(ex);
      } catch (e) {
        this.options.onError(e);
        ex.respond(500, "", ["content-type", "text/plain; charset=utf-8"], null, 0);
      }
    }
  }

  onAbuse(clientIp: string, reason: string): void {
    this.options.onAbuse?.(clientIp, reason);
  }

  gone(c: H2Connection): void {
    this.conns.delete(c);
  }

  /**
   * One interval for the listener: idle connections (no stream open for idleMs) get GOAWAY, and
   * a connection whose answers wait for a window the client never opens (no WINDOW_UPDATE or
   * SETTINGS for min(idleMs, 10 s)) is closed as abusive: it holds backends and buffers.
   */
  #watch(): void {
    if (this.#sweep !== undefined) return;
    const idleMs = this.options.idleMs;
    const stallMs = idleMs > 0 ? Math.min(idleMs, STALL_MS) : STALL_MS;
    this.#sweep = setInterval(() => {
      if (this.conns.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
        return;
      }
      const now = performance.now();
      for (const c of this.conns) {
        // Idle: no stream open at two sweeps idleMs apart and none opened in between (no clock read per stream).
        if (idleMs > 0 && c.active === 0) {
          if (c.idleAt !== c.opens) {
            c.idleAt = c.opens;
            c.idleSince = now;
          } else if (now - c.idleSince > idleMs) c.close();
        } else if (c.blocked > 0 && now - Math.max(c.blockedSince, c.guard.windowMovedAt) > stallMs) {
          c.abuse(`answers waited ${Math.round(stallMs / 1000)} s for a flow-control window the client never opened`);
        }
      }
    }, Math.min(1000, Math.max(10, stallMs / 4)));
    (this.#sweep as { unref?: () => void }).unref?.();
  }
}
