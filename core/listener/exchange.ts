// The answer side of an exchange: heads and bodies written as bytes, so the proxy path builds no Response; the request side is request.ts.
import { Buffer } from "node:buffer";
import { LAST_CHUNK, writeChunk } from "../http1/chunked.ts";
import type { RawExchange, TunnelEnd } from "../runtime/types.ts";
import { switchProtocols } from "./upgrade.ts";
import {
  type BodyInRead,
  CONNECTION_CLOSE,
  CONTENT_LENGTH,
  type HeaderBlock,
  latin1,
  put,
  putBlock,
  putInt,
  TE_CHUNKED,
} from "../http1/bytes.ts";
import { Body, IncomingRequest } from "./request.ts";

export const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  414: "URI Too Long",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The reused buffer for whole answers (see Exchange.respond); larger ones get their own. */
const SCRATCH_SIZE = 128 * 1024;
let shared: Buffer | undefined;

/** Headers the listener writes itself (framing, connection management); never copied from an answer. */
const OWN = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);

// The Date header, formatted at most once a second.
let dateSecond = 0;
let dateValue = "";
export function httpDate(): string {
  const now = Date.now();
  const s = (now / 1000) | 0;
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

const ascii = (s: string) => Buffer.from(s, "latin1");
const HTTP11 = ascii("HTTP/1.1 ");
const DATE = ascii("date: ");
const CONNECTION_KEEP_ALIVE = ascii("connection: keep-alive\r\n");

/** At least the bytes {@link Exchange.#writeHead} writes for these headers (status line, date, framing, connection). */
function headBound(statusText: string, headers: readonly string[] | HeaderBlock): number {
  let n = 160 + statusText.length;
  if (!Array.isArray(headers)) return n + (headers as HeaderBlock).size;
  for (let i = 0; i < headers.length; i++) n += headers[i]!.length + 2;
  return n;
}

/** One request on a connection, and its answer. */
export class Exchange extends IncomingRequest implements RawExchange {
  /**
   * Writes the head of an answer, with framing and connection headers of our own, into `buf` from 0
   * (room for {@link headBound}); returns its length. Written as bytes, not built as a string:
   * no rope of pieces per request, no flattening and no second copy into the buffer.
   */
  #writeHead(
    buf: Buffer,
    status: number,
    statusText: string,
    headers: readonly string[] | HeaderBlock,
    length: number,
    chunked: boolean,
  ): number {
    let p = put(buf, 0, HTTP11);
    p = putInt(buf, p, status);
    buf[p++] = 32;
    p = latin1(buf, p, statusText || REASONS[status] || "Unknown");
    buf[p++] = 13;
    buf[p++] = 10;
    let date = false;
    if (!Array.isArray(headers)) {
      const block = headers as HeaderBlock;
      p = putBlock(buf, p, block);
      date = block.hasDate;
    } else {
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i]!;
        if (name === "date") date = true;
        p = latin1(buf, p, name);
        buf[p++] = 58;
        buf[p++] = 32;
        p = latin1(buf, p, headers[i + 1]!);
        buf[p++] = 13;
        buf[p++] = 10;
      }
    }
    if (!date) {
      p = put(buf, p, DATE);
      p = latin1(buf, p, httpDate());
      buf[p++] = 13;
      buf[p++] = 10;
    }
    if (chunked) p = put(buf, p, TE_CHUNKED);
    else if ((length >= 0 && status !== 204 && status !== 304 && status >= 200) || (status === 304 && length >= 0)) {
      p = put(buf, p, CONTENT_LENGTH);
      p = putInt(buf, p, length);
      buf[p++] = 13;
      buf[p++] = 10;
    }
    const conn = this.conn;
    // A request body not all received yet when the answer starts (a middleware that answered
    // without reading it, a backend that answered early) may be left unread: next() then closes,
    // so say so now rather than leave the client to find out by a close it did not expect.
    if (conn.closeAfter || conn.server.closing || this.bodyState === Body.Length || this.bodyState === Body.Chunked) {
      conn.closeAfter = true;
      p = put(buf, p, CONNECTION_CLOSE);
    } else if (this.minor === 0) p = put(buf, p, CONNECTION_KEEP_ALIVE);
    buf[p++] = 13;
    buf[p++] = 10;
    return p;
  }

  /** Writes the head (and `body`) in one send(), through the reused buffer when they fit. */
  #send(
    status: number,
    statusText: string,
    headers: readonly string[] | HeaderBlock,
    length: number,
    chunked: boolean,
    body: Uint8Array | undefined,
  ): void {
    const total = headBound(statusText, headers) + (body === undefined ? 0 : body.length);
    const buf = total <= SCRATCH_SIZE ? (shared ??= Buffer.allocUnsafe(SCRATCH_SIZE)) : Buffer.allocUnsafe(total);
    let end = this.#writeHead(buf, status, statusText, headers, length, chunked);
    if (body !== undefined && body.length > 0) {
      buf.set(body, end);
      end += body.length;
    }
    if (buf === shared) this.conn.writeScratch(buf, end);
    else this.conn.write(buf.subarray(0, end));
  }

  /**
   * {@link respond} with a whole body still in its read (BodyInRead): the head goes where the
   * backend's was, just before the body, and both go out from there in one send() (or, when the
   * head is longer, head and body from the reused buffer). No view of the read is made.
   */
  respondInRead(status: number, statusText: string, headers: readonly string[] | HeaderBlock, body: BodyInRead): void {
    const read = body.buf, at = body.at, length = body.end - at;
    if (this.method === "HEAD" || status === 204 || status === 304 || status < 200 || this.answered || this.done || this.conn.closed) {
      return this.respond(status, statusText, headers, read.subarray(at, body.end), length);
    }
    this.answered = true;
    const buf = (shared ??= Buffer.allocUnsafe(SCRATCH_SIZE));
    const bound = headBound(statusText, headers);
    if (bound + length > SCRATCH_SIZE) {
      this.#send(status, statusText, headers, length, false, read.subarray(at, body.end));
      return this.finish();
    }
    const end = this.#writeHead(buf, status, statusText, headers, length, false);
    if (end <= at) {
      body.spend?.();
      buf.copy(read, at - end, 0, end);
      this.conn.writeScratch(read, body.end, at - end);
    } else {
      read.copy(buf, end, at, body.end);
      this.conn.writeScratch(buf, end + length);
    }
    this.finish();
  }

  respond(
    status: number,
    statusText: string,
    headers: readonly string[] | HeaderBlock,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
    length: number,
  ): void {
    if (this.answered) return;
    this.answered = true;
    const conn = this.conn;
    if (this.done || conn.closed) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return;
    }
    const noBody = this.method === "HEAD" || status === 204 || status === 304 || status < 200;
    if (noBody || body === null || body instanceof Uint8Array) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      const bytes = noBody || body === null ? undefined : (body as Uint8Array);
      // HEAD and 304 declare the length the body would have (only if the backend did); 204 none.
      const len = this.method === "HEAD" || status === 304 ? length : bytes === undefined ? 0 : bytes.length;
      // Head and body in one send(), through one reused buffer rather than a new one per answer:
      // 16 KiB GET 81 -> 72 µs CPU a request, 100 B 54 -> 50 (one process, median of 8
      // interleaved rounds; the allocation and the garbage collection it drives).
      this.#send(status, statusText, headers, len, false, bytes);
      return this.finish();
    }
    // A stream: with its length when known; else chunked, or until close for an HTTP/1.0 client.
    const chunked = length < 0 && this.minor === 1;
    if (length < 0 && !chunked) conn.closeAfter = true;
    this.#send(status, statusText, headers, length, chunked, undefined);
    void this.#pump(body, length, chunked);
  }

  async #pump(body: ReadableStream<Uint8Array>, length: number, chunked: boolean): Promise<void> {
    const conn = this.conn;
    const reader = body.getReader();
    this.reader = reader;
    const write = (d: Uint8Array) => conn.write(d);
    let sent = 0;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        if (this.done || conn.closed) throw new Error("client closed the connection");
        const v = r.value;
        if (v.length === 0) continue;
        sent += v.length;
        let ok: boolean;
        if (chunked) {
          ok = writeChunk(write, v);
        } else if (length >= 0 && sent > length) {
          throw new Error("response body longer than its Content-Length");
        } else ok = conn.write(v);
        if (!ok) {
          await conn.drained();
          if (conn.closed) throw new Error("client closed the connection");
        }
      }
      if (chunked) conn.write(LAST_CHUNK);
      else if (length >= 0 && sent !== length) throw new Error("response body shorter than its Content-Length");
      this.reader = undefined;
      this.finish();
    } catch (e) {
      this.reader = undefined;
      reader.cancel(e).catch(() => {});
      // The head is out: the only honest signal left is to cut the connection.
      conn.closeAfter = true;
      conn.destroy();
      this.finish();
    }
  }

  respondWith(response: Response): void {
    if (this.answered) {
      // Already answered (a request body fault): nobody reads this body; cancelling it ends the request.
      response.body?.cancel().catch(() => {});
      return;
    }
    const headers: string[] = [];
    let length = -1;
    response.headers.forEach((value, name) => {
      if (name === "content-length") length = /^\d{1,15}$/.test(value) ? Number(value) : -1;
      else if (!OWN.has(name)) headers.push(name, value);
    });
    const body = response.body;
    // respond() uses `length` only where no body goes out with it (HEAD, 304): the length the
    // body would have. A 304 through a middleware route keeps the backend's, as a direct one does.
    if (body === null) return this.respond(response.status, response.statusText, headers, null, length);
    if (this.method === "HEAD") {
      body.cancel().catch(() => {});
      return this.respond(response.status, response.statusText, headers, null, length);
    }
    // Read ahead what is already there: a body that ends within two pieces and before the next
    // turn of the event loop goes out with its real length (a middleware that replaced a response
    // may have kept the old Content-Length). Anything else is streamed as it comes, with its
    // declared length (checked while writing), else chunked: a stream whose next piece is not
    // there yet (server-sent events, a slow backend) must not hold back its head and first piece.
    const reader = body.getReader();
    const status = response.status;
    const text = response.statusText;
    const parts: Uint8Array[] = [];
    let decided = false;
    /** The read in progress; once streaming, the stream's pull takes it over. */
    let reading: ReturnType<typeof reader.read> | undefined;
    const stream = () => {
      if (decided) return;
      decided = true;
      const s = new ReadableStream<Uint8Array>(
        {
          start(c) {
            for (const p of parts) c.enqueue(p);
          },
          async pull(c) {
            const r = await (reading ?? reader.read());
            reading = undefined;
            if (r.done) c.close();
            else c.enqueue(r.value);
          },
          cancel: (reason) => reader.cancel(reason),
        },
        { highWaterMark: 0 },
      );
      this.respond(status, text, headers, s, length);
    };
    const readAhead = () => {
      const r = (reading = reader.read());
      r.then(
        (got) => {
          if (decided) return; // the stream's pull has it
          reading = undefined;
          if (got.done) {
            decided = true;
            const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
            return this.respond(status, text, headers, bytes, bytes.length);
          }
          parts.push(got.value);
          if (parts.length < 2) readAhead();
          else stream();
        },
        (e) => {
          if (decided) return;
          decided = true;
          this.fail(e);
        },
      );
    };
    readAhead();
    setImmediate(stream);
  }

  /** Answer 101 and hand the connection to a tunnel (upgrade.ts); the exchange is over for HTTP/1.1. */
  switchProtocols(protocol: string, headers: readonly string[] | HeaderBlock): TunnelEnd {
    this.answered = true;
    this.done = true;
    return switchProtocols(this.conn, protocol, headers);
  }

  /** The handler failed: a 500 if nothing was written yet, else cut the connection. */
  fail(e: unknown): void {
    if (!this.answered) {
      this.conn.server.onError(e);
      this.respond(500, "", ["content-type", "text/plain; charset=utf-8"], Buffer.from("internal error\n"), 15);
      return;
    }
    this.conn.destroy();
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    this.conn.next();
  }
}
