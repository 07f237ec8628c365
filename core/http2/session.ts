/**
 * HTTP/2 on sockets the HTTP/1.1 listener hands over (h2c with prior knowledge: the client's
 * first bytes are the HTTP/2 preface; or, on a TLS listener, ALPN "h2"): one `node:http2`
 * server per listener serves the sessions, and each stream becomes an {@link H2Exchange} for the
 * gateway. The bounds on abusive clients (guard.ts) watch the frames before the session parses them.
 */
import type { Buffer } from "node:buffer";
import http2, { type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { RequestError } from "../http1/request-head.ts";
import type { Http2Settings, RawExchange, TcpSocket, TlsInfo } from "../runtime/types.ts";
import { H2Exchange, type H2Conn } from "./exchange.ts";
import { requestHead } from "./headers.ts";
import { SocketDuplex, type TakenConn } from "./socket.ts";
import { FrameGuard, GUARD, goawayFrame } from "./guard.ts";

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
/** How long a connection closed for abuse keeps reading (and dropping) after its GOAWAY (socket.ts lingerMs). */
const LINGER_MS = 1000;
const PROTOCOL_ERROR = 0x1;
const ENHANCE_YOUR_CALM = 0xb;

/** The session's writes waiting for the socket beyond this make response bodies wait (roomToWrite). */
const WRITE_HIGH = 256 * 1024;

/** One client connection serving HTTP/2. */
export class H2Connection implements H2Conn {
  session: Http2Session | undefined;
  /** Streams open now, streams answered in full, and when the last one closed. */
  active = 0;
  answered = 0;
  idleSince = performance.now();
  /** Streams whose answer waits for the client's flow-control window, and since when one has. */
  blocked = 0;
  blockedSince = 0;
  /** Streams the client reset after the gateway had started on them, before their answer. */
  prematureResets = 0;
  readonly guard: FrameGuard;
  abusive: string | undefined;
  /** A GOAWAY went out (ours or the session's): no second one. */
  goaway = false;
  #waiting: (() => void)[] | undefined;
  constructor(
    readonly front: H2Front,
    readonly duplex: SocketDuplex,
    readonly clientIp: string,
    /** The TLS version and cipher of the connection (TLS listeners), for spans. */
    readonly tlsInfo: () => TlsInfo | undefined,
  ) {
    this.guard = new FrameGuard(this, front.options.settings.maxHeaderListSize);
  }

  /** A stream's answer starts or stops waiting for the window (exchange.ts). */
  block(waiting: boolean): void {
    if (waiting) {
      if (this.blocked++ === 0) this.blockedSince = performance.now();
    } else this.blocked--;
  }

  /** Past a bound: GOAWAY (ENHANCE_YOUR_CALM), nothing more read, the connection closed. */
  abuse(reason: string): void {
    if (this.abusive) return;
    this.abusive = reason;
    this.duplex.lingerMs = LINGER_MS;
    this.front.options.onAbuse?.(this.clientIp, reason);
    const s = this.session;
    if (!this.goaway) {
      this.goaway = true;
      if (s !== undefined && !s.destroyed) s.goaway(ENHANCE_YOUR_CALM, this.guard.lastStream);
      else this.duplex.writeRaw(goawayFrame(this.guard.lastStream, ENHANCE_YOUR_CALM));
    }
    // A moment for the GOAWAY to be written, then the session goes (streams in flight are
    // cancelled, their backends released); the socket lingers a second, reading nothing into it.
    const t = setTimeout(() => {
      s?.destroy();
      this.duplex.destroy();
    }, 20);
    (t as { unref?: () => void }).unref?.();
  }

  get maxBody(): number {
    return this.front.options.maxBody;
  }

  get scheme(): "http" | "https" {
    return this.front.options.scheme;
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

  opened(): void {
    this.active++;
  }

  closed(): void {
    if (--this.active === 0) this.idleSince = performance.now();
  }

  premature(): void {
    if (++this.prematureResets > GUARD.maxPremature && this.prematureResets > this.answered) {
      this.abuse(`${this.prematureResets} streams reset before their answer, ${this.answered} answered (rapid reset)`);
    }
  }

  onError(e: unknown): void {
    this.front.options.onError(e);
  }

  /**
   * The session gave up on the connection itself (its error event: a decoded header list over
   * max_header_list_size, its own flood checks, a protocol error): it sends no GOAWAY, so one is
   * written here, ENHANCE_YOUR_CALM for a flood or a header block, else PROTOCOL_ERROR.
   */
  failed(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (this.goaway) return;
    this.goaway = true;
    this.duplex.lingerMs = LINGER_MS;
    const calm = /flood/i.test(message) || this.guard.inHeaderBlock;
    if (calm && !this.abusive) {
      this.abusive = message;
      this.front.options.onAbuse?.(this.clientIp, this.guard.inHeaderBlock ? `header block refused: ${message}` : message);
    }
    this.duplex.writeRaw(goawayFrame(this.guard.lastStream, calm ? ENHANCE_YOUR_CALM : PROTOCOL_ERROR));
  }

  /** GOAWAY, then close once the open streams are done (shutdown, idle). */
  close(): void {
    const s = this.session;
    if (s === undefined || s.closed || s.destroyed) return void this.duplex.destroy();
    this.goaway = true;
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
      session.on("error", (e) => c.failed(e));
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
    takeover: (
      owner: SocketDuplex,
    ) => { socket: TcpSocket<unknown>; conn: TakenConn; tlsInfo?: () => TlsInfo | undefined } | undefined,
    first: Buffer | undefined,
  ): void {
    const duplex = new SocketDuplex();
    const taken = takeover(duplex);
    if (taken === undefined) return;
    const c = new H2Connection(this, duplex, clientIp, taken.tlsInfo ?? (() => undefined));
    this.conns.add(c);
    duplex.onGone = () => this.conns.delete(c);
    duplex.onShutdown = () => c.close();
    duplex.onWritten = () => c.drained();
    duplex.inspect = (chunk) => {
      if (c.abusive !== undefined) return 0;
      const why = c.guard.feed(chunk);
      if (why === undefined) return -1;
      // The frames before the one that crossed the bound are parsed (the preface among them), so that the GOAWAY follows them.
      setImmediate(() => c.abuse(why));
      c.abusive ??= "";
      return c.guard.stopAt;
    };
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
        if (idleMs > 0 && c.active === 0 && now - c.idleSince > idleMs) c.close();
        else if (c.blocked > 0 && now - Math.max(c.blockedSince, c.guard.windowMovedAt) > stallMs) {
          c.abuse(`answers waited ${Math.round(stallMs / 1000)} s for a flow-control window the client never opened`);
        }
      }
    }, Math.min(1000, Math.max(10, stallMs / 4)));
    (this.#sweep as { unref?: () => void }).unref?.();
  }
}
