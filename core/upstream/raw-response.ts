/**
 * The receiving side of the raw upstream client: the socket handlers (given to the runtime's
 * connect function by raw-pool.ts) and the strict reading of responses (../http1/), handed over
 * whole when small or streamed with backpressure.
 */
import { Buffer } from "node:buffer";
import { UpstreamError, type UpstreamResponse } from "./types.ts";
import { Conn, Exchange, Framing, Phase } from "./raw-conn.ts";
import { parseHead, ParseError, type ResponseHead } from "../http1/response.ts";
import { ChunkedDecoder } from "../http1/chunked.ts";
import type { BodyInRead } from "../http1/bytes.ts";
import type { TcpHandlers } from "../runtime/types.ts";
import { ConnTunnel } from "./raw-tunnel.ts";
import { limits, PART_COPY } from "./raw-limits.ts";

/** Whether head and a body of `length` bytes are small enough to hand over whole (with room for a Date). */
function fitsCork(head: ResponseHead, length: number): boolean {
  return length + (head.end - head.from) + 64 <= limits.whole;
}

const EMPTY = Buffer.alloc(0); // `buf` of a response whose body is not in its read
/**
 * The response as the proxy sees it; header strings are made only if something reads them. A whole
 * body still in its read (`inRead`, BodyInRead) becomes a view, `body`, only if middleware reads it.
 */
class RawResponse implements UpstreamResponse, BodyInRead {
  #body: UpstreamResponse["body"];
  constructor(
    readonly head: ResponseHead,
    body: UpstreamResponse["body"],
    readonly tunnel?: ConnTunnel,
    readonly buf: Buffer = EMPTY,
    readonly at = 0,
    readonly end = 0,
  ) {
    this.#body = body;
  }
  get inRead(): BodyInRead | undefined {
    return this.buf === EMPTY ? undefined : this;
  }
  spend(): void {
    this.head.spend();
  }
  get body(): UpstreamResponse["body"] {
    if (this.#body === null && this.buf !== EMPTY) this.#body = this.buf.subarray(this.at, this.end) as Uint8Array<ArrayBuffer>;
    return this.#body;
  }
  get status() {
    return this.head.status;
  }
  get statusText() {
    return this.head.statusText;
  }
  get rawHeaders() {
    return this.head.rawHeaders;
  }
  get block() {
    return this.head.block;
  }
  get contentLength() {
    return this.head.contentLength;
  }
}

function responseTimedOut(ex: Exchange): void {
  if (ex.phase === Phase.Small) {
    // The head came in time; only the rest of a small body is slow: stream what is here and the
    // rest as it comes, as a large body would be, rather than answer 504 for a slow body.
    const got = ex.small!.subarray(0, ex.smallAt);
    ex.small = undefined;
    startStream(ex);
    if (got.length > 0) ex.push(got);
    return;
  }
  ex.fail(new UpstreamError("timeout", `no response headers within ${ex.req.responseTimeoutMs}ms`, true));
}

function connectTimedOut(conn: Conn): void {
  conn.connectTimer = undefined;
  conn.ex?.fail(new UpstreamError("connect", `connect timed out after ${conn.ex.req.connectTimeoutMs}ms`, false));
  conn.destroy();
}

const handlers: TcpHandlers<Conn> = {
  open(s) {
    const conn = s.data;
    conn.socket = s;
    if (conn.connectTimer) clearTimeout(conn.connectTimer);
    conn.connectTimer = undefined;
    if (conn.closed || conn.ex === undefined) return void s.terminate();
    // Bun opens a TLS connection whose certificate failed verification (and closes it after this
    // handler): nothing of the request may go out on it.
    if (s.authorized === false && conn.pool.target.protocol === "https:" && conn.pool.target.tls?.verify !== false) {
      conn.closed = true;
      const why = s.getAuthorizationError?.()?.message ?? "certificate not verified";
      conn.ex.fail(new UpstreamError("connect", `TLS handshake with the backend failed: ${why}`, false));
      return void s.terminate();
    }
    conn.pool.start(conn, conn.ex);
  },
  connectError(s, error) {
    const conn = s.data;
    conn.closed = true;
    if (conn.connectTimer) clearTimeout(conn.connectTimer);
    conn.ex?.fail(new UpstreamError("connect", error.message, false, { cause: error }));
  },
  data(s, chunk) {
    const conn = s.data;
    if (conn.tunnel !== undefined) return conn.tunnel.onData(chunk);
    const ex = conn.ex;
    // Bytes on an idle connection were never asked for (no pipelining): drop the connection.
    if (ex === undefined) return conn.pool.drop(conn);
    ex.gotBytes = true;
    try {
      onData(ex, chunk);
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      if (!ex.settled) ex.fail(new UpstreamError("reset", `invalid response: ${e.message}`, true, { cause: e }));
      else ex.bodyFailed(`invalid response body: ${e.message}`);
    }
  },
  drain(s) {
    s.data.flush();
  },
  end(s) {
    const tunnel = s.data.tunnel;
    if (tunnel !== undefined) return tunnel.onClose("backend closed the connection");
    onClosed(s.data, "backend closed the connection");
    s.terminate();
  },
  close(s, error) {
    const why = error ? `connection error: ${error.message}` : "backend closed the connection";
    const tunnel = s.data.tunnel;
    if (tunnel !== undefined) return tunnel.onClose(why);
    onClosed(s.data, why);
  },
  error(s, error) {
    const tunnel = s.data.tunnel;
    if (tunnel !== undefined) return tunnel.onClose(`connection error: ${error.message}`);
    onClosed(s.data, `connection error: ${error.message}`);
  },
  timeout() {},
};

function onClosed(conn: Conn, why: string): void {
  if (conn.closed && conn.ex === undefined) return;
  conn.closed = true;
  conn.wake();
  const ex = conn.ex;
  if (ex === undefined) return conn.pool.drop(conn);
  if (!ex.settled) {
    // Closed before it was ready: for https, the TLS handshake failed (often the backend's certificate).
    if (conn.socket === undefined) {
      const tls = conn.pool.target.protocol === "https:";
      return ex.fail(new UpstreamError("connect", tls ? `TLS handshake with the backend failed (${why})` : why, false));
    }
    // A kept-alive connection the backend closed while idle fails before any byte. Re-send
    // once on a new connection, only without a body (nothing was streamed, nothing is lost).
    if (conn.reused && !ex.gotBytes && ex.req.body === null && ex.mayRetryStale) {
      ex.mayRetryStale = false;
      conn.ex = undefined;
      ex.conn = undefined;
      conn.pool.connect(ex);
      return;
    }
    return ex.fail(new UpstreamError("reset", `${why} before the response was complete`, true));
  }
  if (ex.phase !== Phase.Body) return;
  if (ex.framing === Framing.UntilClose) {
    // The body ended with the connection, as its framing said it would.
    ex.phase = Phase.Done;
    ex.conn = undefined;
    conn.ex = undefined;
    ex.controller!.close();
    ex.endBody();
    return;
  }
  ex.bodyFailed("backend closed the response early");
}

function onData(ex: Exchange, chunk: Buffer): void {
  if (ex.phase === Phase.Body || ex.phase === Phase.Small) return onBody(ex, chunk, 0);
  if (ex.phase !== Phase.Head) return;
  let buf = chunk;
  if (ex.pending !== undefined) {
    buf = Buffer.concat([ex.pending, chunk]);
    ex.pending = undefined;
  }
  let off = 0;
  let head: ResponseHead;
  for (;;) {
    const h = parseHead(buf, off);
    if (h === undefined) {
      ex.pending = off === 0 ? buf : buf.subarray(off);
      return;
    }
    head = h;
    off = h.end;
    if (head.status >= 200) break;
    // 1xx interim responses (100 Continue, 103 Early Hints) are skipped; a 101 only for an upgrade.
    if (head.status === 101) {
      if (ex.req.upgrade !== undefined) return switched(ex, h, buf, off);
      throw new ParseError("unexpected 101 Switching Protocols");
    }
  }
  onHead(ex, head, buf, off);
}

/**
 * `buf[start, end)`: a copy when short, else a view. A view of a small chunk makes JSC first move
 * the chunk to an ArrayBuffer of its own (an allocation and a copy of all of it): \`subarray\` of
 * a 100-byte body's chunk cost 13-15% of the proxy's JS time (bun:jsc profile). Not \`slice\`,
 * which makes a Buffer through its species constructor (6%).
 */
function part(buf: Buffer, start: number, end: number): Uint8Array<ArrayBuffer> {
  if (end - start > limits.partCopy) return buf.subarray(start, end) as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

const BODYLESS = (status: number) => status === 204 || status === 304;
/** A read this large is not held by the head for the length of the response (ResponseHead.detach). */
const DETACH_ABOVE = 16 * 1024;

function onHead(ex: Exchange, head: ResponseHead, buf: Buffer, off: number): void {
  const req = ex.req;
  const length = head.contentLength;
  // A body left in this read (BodyInRead) holds the read anyway: the head stays in it too, no copy.
  const inRead = length > PART_COPY && buf.length - off >= length && req.method !== "HEAD" && !BODYLESS(head.status) &&
    fitsCork(head, length);
  if (buf.length > DETACH_ABOVE && !inRead) head.detach();
  ex.head = head;
  if (req.method === "HEAD" || BODYLESS(head.status)) {
    ex.complete(off < buf.length);
    return handOver(ex, null);
  }
  if (head.chunked) {
    ex.framing = Framing.Chunked;
    const decoder = (ex.decoder = new ChunkedDecoder());
    const parts: Uint8Array[] = [];
    const used = decoder.feed(buf, off, buf.length, parts);
    if (decoder.done) {
      const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      return finishSmall(ex, body, used < buf.length);
    }
    startStream(ex);
    for (const p of parts) ex.push(p);
    return;
  }
  const avail = buf.length - off;
  if (length >= 0) {
    if (avail >= length) {
      if (inRead) {
        // Left in this read, no view made: the client's head may go over the backend's (spend).
        ex.complete(avail > length);
        ex.bytes = length;
        ex.endBody();
        return settle(ex, new RawResponse(head, null, undefined, buf, off, off + length));
      }
      return finishSmall(ex, part(buf, off, off + length), avail > length);
    }
    ex.remaining = length - avail;
    if (fitsCork(head, length)) {
      // Wait for the rest of a small body, then hand it over whole (streamed after all if the rest
      // is still missing when the response timeout passes: see responseTimedOut).
      ex.phase = Phase.Small;
      ex.small = Buffer.allocUnsafe(length);
      ex.small.set(buf.subarray(off), 0);
      ex.smallAt = avail;
      return;
    }
    startStream(ex);
    if (avail > 0) ex.push(buf.subarray(off));
    return;
  }
  ex.framing = Framing.UntilClose;
  startStream(ex);
  if (avail > 0) ex.push(buf.subarray(off));
}

function onBody(ex: Exchange, buf: Buffer, off: number): void {
  if (ex.phase === Phase.Small) {
    const n = Math.min(ex.remaining, buf.length - off);
    ex.small!.set(buf.subarray(off, off + n), ex.smallAt);
    ex.smallAt += n;
    ex.remaining -= n;
    if (ex.remaining === 0) finishSmall(ex, ex.small!, off + n < buf.length);
    return;
  }
  if (ex.framing === Framing.Length) {
    const n = Math.min(ex.remaining, buf.length - off);
    if (n > 0) ex.push(n === buf.length ? buf : buf.subarray(off, off + n));
    ex.remaining -= n;
    if (ex.remaining === 0) endStream(ex, off + n < buf.length);
  } else if (ex.framing === Framing.Chunked) {
    const used = ex.decoder!.feed(buf, off, buf.length, ex);
    if (ex.decoder!.done) endStream(ex, used < buf.length);
  } else ex.push(off === 0 ? buf : buf.subarray(off));
}

/** The whole body is here: hand it over as bytes, or as a one-chunk stream when too big to cork. */
function finishSmall(ex: Exchange, body: Uint8Array, leftover: boolean): void {
  ex.complete(leftover);
  ex.bytes = body.length;
  ex.endBody();
  if (fitsCork(ex.head!, body.length)) return handOver(ex, body as Uint8Array<ArrayBuffer>);
  handOver(
    ex,
    new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(body);
        c.close();
      },
    }),
  );
}

/** A 101 to an upgrade: the connection leaves the pool as a tunnel's end; bytes behind the head are its first. */
function switched(ex: Exchange, head: ResponseHead, buf: Buffer, off: number): void {
  const conn = ex.conn!;
  if (buf.length > DETACH_ABOVE) head.detach();
  ex.head = head;
  ex.phase = Phase.Done;
  ex.settled = true;
  ex.cleanup();
  ex.req.signal.removeEventListener("abort", ex);
  ex.conn = undefined;
  conn.ex = undefined;
  const tunnel = new ConnTunnel(conn);
  conn.tunnel = tunnel;
  if (off < buf.length) tunnel.early = [buf.subarray(off)];
  ex.resolve(new RawResponse(head, null, tunnel));
}

function handOver(ex: Exchange, body: UpstreamResponse["body"]): void {
  settle(ex, new RawResponse(ex.head!, body));
}

function settle(ex: Exchange, res: RawResponse): void {
  ex.settled = true;
  ex.cleanup();
  if (ex.phase !== Phase.Body) ex.req.signal.removeEventListener("abort", ex);
  ex.resolve(res);
}

function startStream(ex: Exchange): void {
  ex.phase = Phase.Body;
  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        ex.controller = c;
      },
      pull() {
        const conn = ex.conn;
        if (conn?.paused) {
          conn.paused = false;
          conn.socket?.resume();
        }
      },
      cancel() {
        if (ex.phase !== Phase.Body) return;
        ex.phase = Phase.Done;
        ex.conn?.destroy();
        ex.conn = undefined;
        ex.endBody("client closed the response early");
      },
    },
    { highWaterMark: 4 },
  );
  handOver(ex, stream);
}

function endStream(ex: Exchange, leftover: boolean): void {
  ex.complete(leftover);
  ex.controller!.close();
  ex.endBody();
}

export { handlers, responseTimedOut, connectTimedOut };
