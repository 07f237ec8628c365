/**
 * HTTP/2 on sockets the HTTP/1.1 listener hands over (h2c with prior knowledge: the client's
 * first bytes are the HTTP/2 preface; or, on a TLS listener, ALPN "h2"): one `node:http2`
 * server per listener serves the sessions, and each stream becomes an {@link H2Exchange} for the
 * gateway. The bounds on abusive clients (guard.ts) watch the frames before the session parses them.
 */
import type { Buffer } from "node:buffer";
import http2, { type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { RequestError } from "../http1/request-head.ts";
import type { Http2Settings, RawExchange, TcpSocket } from "../runtime/types.ts";
import { H2Exchange, type H2Conn } from "./exchange.ts";
import { requestHead } from "./headers.ts";
import { SocketDuplex, type TakenConn } from "./socket.ts";

export interface H2Options {
  settings: Http2Settings;
  /** limits.max_request_body (0: none). */
  maxBody: number;
  /** A connection with no stream open for this long is closed with GOAWAY (limits.client_idle_timeout; 0: never). */
  idleMs: number;
  onError: (e: unknown) => void;
}

/** The session's writes waiting for the socket beyond this make response bodies wait (roomToWrite). */
const WRITE_HIGH = 256 * 1024;

/** One client connection serving HTTP/2. */
export class H2Connection implements H2Conn {
  session: Http2Session | undefined;
  /** Streams open now, streams answered in full, and when the last one closed. */
  active = 0;
  answered = 0;
  idleSince = performance.now();
  #waiting: (() => void)[] | undefined;
  constructor(
    readonly front: H2Front,
    readonly duplex: SocketDuplex,
    readonly clientIp: string,
  ) {}

  get maxBody(): number {
    return this.front.options.maxBody;
  }

  roomToWrite(): Promise<void> | undefined {
    if (this.duplex.queued < WRITE_HIGH) return undefined;
    return new Promise<void>((r) => (this.#waiting ??= []).push(r));
  }

  /** The socket took what was queued (SocketDuplex.onDrain): bodies waiting for room go on. */
  drained(): void {
    const w = this.#waiting;
    if (w === undefined || this.duplex.queued >= WRITE_HIGH) return;
    this.#waiting = undefined;
    for (const f of w) f();
  }

  completed(): void {
    this.answered++;
  }

  onError(e: unknown): void {
    this.front.options.onError(e);
  }

  /** GOAWAY, then close once the open streams are done (shutdown, idle). */
  close(): void {
    const s = this.session;
    if (s === undefined || s.closed || s.destroyed) return void this.duplex.destroy();
    s.close(() => this.duplex.destroy());
  }
}

export class H2Front {
  readonly server: Http2Server;
  readonly conns = new Set<H2Connection>();
  #sessions = new WeakMap<Http2Session, H2Connection>();
  #accepting: H2Connection | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly handler: (ex: RawExchange) => void,
    readonly options: H2Options,
  ) {
    const s = options.settings;
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: s.maxConcurrentStreams,
        initialWindowSize: s.initialWindowSize,
        maxHeaderListSize: s.maxHeaderListSize,
        // RFC 8441: WebSocket over HTTP/2 streams.
        enableConnectProtocol: true,
      },
      maxHeaderListPairs: 256,
    });
    // The session event comes inside emit("connection"): that is how a session finds its connection.
    this.server.on("session", (session: Http2Session) => {
      const c = this.#accepting;
      if (c === undefined) return;
      c.session = session;
      this.#sessions.set(session, c);
      session.on("error", () => {});
    });
    this.server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#stream(stream, headers));
    this.server.on("sessionError", () => {});
  }

  /**
   * Serve HTTP/2 on a socket: `takeover` hands it over (the listener's connection stops reading
   * HTTP/1.1) and returns it; `first` are the bytes already read (the preface, maybe more).
   */
  accept(
    clientIp: string,
    takeover: (owner: SocketDuplex) => { socket: TcpSocket<unknown>; conn: TakenConn } | undefined,
    first: Buffer | undefined,
  ): void {
    const duplex = new SocketDuplex();
    const taken = takeover(duplex);
    if (taken === undefined) return;
    const c = new H2Connection(this, duplex, clientIp);
    this.conns.add(c);
    duplex.onGone = () => this.conns.delete(c);
    duplex.onShutdown = () => c.close();
    duplex.onWritten = () => c.drained();
    duplex.attach(taken.socket, taken.conn, undefined);
    this.#accepting = c;
    try {
      this.server.emit("connection", duplex);
    } finally {
      this.#accepting = undefined;
    }
    if (first !== undefined) duplex.onData(first);
    this.#watch();
  }

  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", () => {});
    const c = this.#sessions.get(stream.session as Http2Session);
    if (c === undefined) return void stream.close(2 /* INTERNAL_ERROR */);
    c.active++;
    stream.once("close", () => {
      c.active--;
      c.idleSince = performance.now();
    });
    let ex: H2Exchange;
    try {
      const head = requestHead(headers as Record<string, string | string[] | undefined>, this.options.settings.maxHeaderListSize);
      const max = this.options.maxBody;
      // A declared length over the limit is refused before anything is read, as over HTTP/1.1.
      if (max > 0 && head.contentLength > max) throw new RequestError(413, "request body too large");
      ex = new H2Exchange(stream, head, stream.endAfterHeaders, c);
    } catch (e) {
      const status = e instanceof RequestError ? e.status : 400;
      const message = `${e instanceof Error ? e.message : String(e)}\n`;
      try {
        stream.respond({ ":status": status, "content-type": "text/plain; charset=utf-8" });
        stream.end(message);
      } catch { /* the stream is gone */ }
      return;
    }
    try {
      this.handler(ex);
    } catch (e) {
      this.options.onError(e);
      ex.respond(500, "", ["content-type", "text/plain; charset=utf-8"], null, 0);
    }
  }

  /** Idle connections (no stream open for idleMs) get GOAWAY; one interval for the listener. */
  #watch(): void {
    if (this.#sweep !== undefined || this.options.idleMs <= 0) return;
    this.#sweep = setInterval(() => {
      if (this.conns.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
        return;
      }
      const now = performance.now();
      for (const c of this.conns) if (c.active === 0 && now - c.idleSince > this.options.idleMs) c.close();
    }, Math.min(1000, Math.max(10, this.options.idleMs / 4)));
    (this.#sweep as { unref?: () => void }).unref?.();
  }
}
