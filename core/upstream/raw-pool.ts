/**
 * The keep-alive pool of one backend for the raw upstream client (raw-client.ts): idle
 * connections reused last-in first-out (the warmest first; the coldest age out), at most
 * `maxIdle` kept, each closed after `idleTimeoutMs` idle by one timer per pool. It writes the
 * requests; raw-response.ts reads the responses.
 */
import { Buffer } from "node:buffer";
import {
  UpstreamError,
  type PoolOptions,
  type UpstreamAgent,
  type UpstreamRequest,
  type UpstreamResponse,
  type UpstreamTarget,
} from "./types.ts";
import { Conn, Exchange, WaitList, type ConnPool } from "./raw-conn.ts";
import { connectTimedOut, handlers, responseTimedOut } from "./raw-response.ts";
import { LAST_CHUNK, writeChunk } from "../http1/chunked.ts";
import { CONNECTION_CLOSE, CONTENT_LENGTH, latin1, put, putBlock, putInt, TE_CHUNKED } from "../http1/bytes.ts";
import type { TcpConnect } from "../runtime/types.ts";

const ascii = (s: string) => Buffer.from(s, "latin1");
const HTTP11_CRLF = ascii(" HTTP/1.1\r\n");
const CONNECTION_UPGRADE = ascii("connection: upgrade\r\nupgrade: ");
/** The reused buffer for request heads (with a buffered body); larger ones get their own. */
const SCRATCH_SIZE = 64 * 1024;
let scratch: Buffer | undefined;

export class RawPool implements UpstreamAgent, ConnPool {
  /** Oldest first (idle times ascend), so expiry takes a prefix and reuse pops the warmest. */
  idle: Conn[] = [];
  closed = false;
  readonly keepAlive: boolean;
  #sweep: ReturnType<typeof setTimeout> | undefined;
  /**
   * Exchanges waiting for their response head, checked against their deadline by one interval
   * timer per pool: a timer per request (setTimeout + clearTimeout) cost ~1.4 µs on this machine.
   * A list linked through the exchanges, not a `Set`: with a Set, JSC's young-generation GC kept
   * every exchange deleted since the last collection alive (measured with BUN_JSC_logGC: each
   * eden collection promoted ~4.5 MB at 16k req/s, forcing a full collection every ~0.6 s).
   */
  readonly waiting = new WaitList();
  #deadlines: ReturnType<typeof setInterval> | undefined;
  #tick = 0;

  constructor(
    readonly target: UpstreamTarget,
    readonly options: PoolOptions,
    /** The runtime's TCP connect (Bun.connect on Bun), called once per new connection. */
    readonly tcpConnect: TcpConnect,
  ) {
    this.keepAlive = options.maxIdle > 0;
  }

  send(req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const ex = new Exchange(this, req, resolve, reject);
      if (req.signal.aborted) return ex.fail(new UpstreamError("aborted", "client closed the request", true));
      req.signal.addEventListener("abort", ex);
      ex.deadline = performance.now() + req.responseTimeoutMs;
      this.waiting.add(ex);
      this.#watch(req.responseTimeoutMs);
      // An upgrade gets a connection of its own: it never comes back to the pool.
      if (req.upgrade !== undefined) return this.connect(ex);
      let conn: Conn | undefined;
      while ((conn = this.idle.pop()) !== undefined && conn.closed);
      if (conn === undefined) return this.connect(ex);
      conn.ex = ex;
      ex.conn = conn;
      this.start(conn, ex);
    });
  }

  /** Check deadlines every 5% of the shortest response timeout in use (5 ms to 1 s). */
  #watch(timeoutMs: number): void {
    const tick = Math.min(1000, Math.max(5, Math.floor(timeoutMs / 20)));
    if (this.#deadlines !== undefined && tick >= this.#tick) return;
    if (this.#deadlines !== undefined) clearInterval(this.#deadlines);
    this.#tick = tick;
    this.#deadlines = setInterval(checkDeadlines, tick, this);
    (this.#deadlines as { unref?: () => void }).unref?.();
  }

  /** The interval's work: time out late exchanges; stop when none waits. */
  checkDeadlines(): void {
    if (this.waiting.head === undefined) {
      clearInterval(this.#deadlines);
      this.#deadlines = undefined;
      return;
    }
    const now = performance.now();
    // responseTimedOut unlinks the exchange: take the next one first.
    for (let ex: Exchange | undefined = this.waiting.head; ex !== undefined;) {
      const next: Exchange | undefined = ex.nextWaiting;
      if (now >= ex.deadline) responseTimedOut(ex);
      ex = next;
    }
  }

  /** Open a new connection for `ex`; the request goes out in the `open` handler. */
  connect(ex: Exchange): void {
    const conn = new Conn(this);
    conn.ex = ex;
    ex.conn = conn;
    conn.connectTimer = setTimeout(connectTimedOut, ex.req.connectTimeoutMs, conn);
    const t = this.target;
    const failed = (e: Error) => {
      conn.closed = true;
      if (conn.connectTimer) clearTimeout(conn.connectTimer);
      conn.ex?.fail(new UpstreamError("connect", e.message, false, { cause: e }));
    };
    try {
      const tls = t.protocol === "https:" ? (t.tls ?? true) : false;
      this.tcpConnect<Conn>({ hostname: t.hostname, port: t.port, handlers, data: conn, tls }).catch(failed);
    } catch (e) {
      failed(e as Error);
    }
  }

  /**
   * Write the request head (and a buffered body) on a ready connection, then stream a body. The
   * head is written as bytes into a reused buffer (no string built per request); header values
   * are latin1 (ByteStrings, or bytes as the listener read them): one byte per character.
   */
  start(conn: Conn, ex: Exchange): void {
    const req = ex.req;
    const h = req.headers;
    // A body still in the client's read (BodyInRead) is copied from there: `body` would make a view of it.
    const inRead = req.bodyInRead;
    const body = inRead === undefined ? req.body : null;
    const basePath = this.target.basePath;
    let size = req.method.length + basePath.length + req.path.length + 96 + (req.upgrade?.length ?? 0);
    for (const name in h) size += name.length + h[name]!.length + 4;
    const block = req.block;
    if (block !== undefined) size += block.size;
    // A buffered body goes out with the head from the reused buffer; a larger one is written
    // after it as it is (an OTLP export's ~200 KB body was copied into a fresh buffer each time).
    const bytes = body instanceof Uint8Array ? body : undefined;
    const length = inRead !== undefined ? inRead.end - inRead.at : bytes !== undefined ? bytes.length : -1;
    const inline = length >= 0 && size + length <= SCRATCH_SIZE;
    if (inline) size += length;
    const buf = size <= SCRATCH_SIZE ? (scratch ??= Buffer.allocUnsafe(SCRATCH_SIZE)) : Buffer.allocUnsafe(size);
    let p = latin1(buf, 0, req.method);
    buf[p++] = 32;
    p = latin1(buf, p, basePath);
    p = latin1(buf, p, req.path);
    p = put(buf, p, HTTP11_CRLF);
    for (const name in h) {
      p = latin1(buf, p, name);
      buf[p++] = 58;
      buf[p++] = 32;
      p = latin1(buf, p, h[name]!);
      buf[p++] = 13;
      buf[p++] = 10;
    }
    if (block !== undefined) p = putBlock(buf, p, block);
    let chunked = false;
    if (length >= 0) {
      if (h["content-length"] === undefined) {
        p = put(buf, p, CONTENT_LENGTH);
        p = putInt(buf, p, length);
        buf[p++] = 13;
        buf[p++] = 10;
      }
    } else if (body !== null && h["content-length"] === undefined) {
      chunked = true;
      p = put(buf, p, TE_CHUNKED);
    }
    if (req.upgrade !== undefined) {
      p = put(buf, p, CONNECTION_UPGRADE);
      p = latin1(buf, p, req.upgrade);
      buf[p++] = 13;
      buf[p++] = 10;
    } else if (!this.keepAlive) p = put(buf, p, CONNECTION_CLOSE);
    buf[p++] = 13;
    buf[p++] = 10;
    if (inline) {
      if (inRead !== undefined) inRead.buf.copy(buf, p, inRead.at, inRead.end);
      else buf.set(bytes!, p);
      p += length;
    }
    if (buf === scratch) conn.writeScratch(buf, p);
    else conn.write(buf.subarray(0, p));
    if (length >= 0 && !inline) conn.write(inRead !== undefined ? inRead.buf.subarray(inRead.at, inRead.end) : bytes!);
    if (body === null || length >= 0) ex.bodySent = true;
    else void pump(conn, ex, body as ReadableStream<Uint8Array>, chunked);
  }

  /** A response ended: keep the connection for the next request, or close it. */
  release(conn: Conn, reusable: boolean): void {
    conn.ex = undefined;
    if (!reusable || conn.closed || this.closed || !this.keepAlive || this.idle.length >= this.options.maxIdle) {
      return conn.destroy();
    }
    conn.reused = true;
    if (conn.paused) {
      conn.paused = false;
      conn.socket?.resume();
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
    if (this.#sweep === undefined) this.#schedule(this.options.idleTimeoutMs);
  }

  /** Close a connection that misbehaved or was closed while idle. */
  drop(conn: Conn): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.destroy();
  }

  #schedule(ms: number): void {
    this.#sweep = setTimeout(sweep, Math.max(ms, 5), this);
    (this.#sweep as { unref?: () => void }).unref?.();
  }

  /** Close connections idle for `idleTimeoutMs`; called by the pool's one timer. */
  expire(): void {
    this.#sweep = undefined;
    const now = performance.now();
    const limit = now - this.options.idleTimeoutMs;
    const idle = this.idle;
    let k = 0;
    while (k < idle.length && idle[k]!.idleSince <= limit) k++;
    if (k > 0) { for (const c of idle.splice(0, k)) c.destroy(); }
    if (idle.length > 0) this.#schedule(idle[0]!.idleSince + this.options.idleTimeoutMs - now);
  }

  destroy(): void {
    this.closed = true;
    // Exchanges still waiting keep their deadline check; the interval stops once they settle.
    if (this.#deadlines !== undefined && this.waiting.head === undefined) {
      clearInterval(this.#deadlines);
      this.#deadlines = undefined;
    }
    if (this.#sweep !== undefined) clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const c of this.idle) c.destroy();
    this.idle = [];
  }
}

function sweep(pool: RawPool): void {
  pool.expire();
}

function checkDeadlines(pool: RawPool): void {
  pool.checkDeadlines();
}

/**
 * Stream a request body upstream: with the client's Content-Length (checked: never more or
 * fewer bytes than declared), else chunked. Waits for drain when the kernel is full.
 */
async function pump(conn: Conn, ex: Exchange, body: ReadableStream<Uint8Array>, chunked: boolean): Promise<void> {
  const declared = chunked ? -1 : Number(ex.req.headers["content-length"]);
  const reader = body.getReader();
  const write = (d: Uint8Array) => conn.write(d);
  let sent = 0;
  try {
    for (;;) {
      const r = await reader.read();
      if (ex.conn !== conn || conn.closed) throw new Error("upstream connection closed");
      if (r.done) break;
      const v = r.value;
      if (v.length === 0) continue;
      sent += v.length;
      let ok: boolean;
      if (!chunked) {
        if (sent > declared) throw new Error("request body longer than its Content-Length");
        ok = conn.write(v);
      } else {
        ok = writeChunk(write, v);
      }
      if (!ok) {
        await new Promise<void>((resolve) => (conn.onDrain = resolve));
        if (ex.conn !== conn || conn.closed) throw new Error("upstream connection closed");
      }
    }
    if (chunked) conn.write(LAST_CHUNK);
    else if (sent !== declared) throw new Error("request body shorter than its Content-Length");
    ex.bodySent = true;
  } catch (e) {
    reader.cancel(e).catch(() => {});
    // Also ends a response that arrived before the body was sent: that connection is not reused.
    ex.fail(new UpstreamError("reset", `request body: ${(e as Error).message}`, true, { cause: e }));
  } finally {
    reader.releaseLock();
  }
}
