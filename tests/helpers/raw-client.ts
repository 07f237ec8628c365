/**
 * Raw HTTP/1.1 on loopback sockets, for conformance tests of what a client or a backend sees
 * byte for byte: a client that writes arbitrary bytes and parses the replies strictly, and a
 * backend that records every request it parses (method, target, headers, de-chunked body).
 * Every wait is for an event (data, close) with a bounded timeout: never a sleep.
 */
import { Buffer } from "node:buffer";
import { connect, createServer, type Server, type Socket } from "node:net";

/** What a client got for a request: a status code, or the connection closed without a response. */
export type Outcome = number | "closed";

export interface RawResponse {
  version: string;
  status: number;
  reason: string;
  /** Header names lower-cased, in order, values as sent (OWS trimmed). */
  headers: [string, string][];
  /** The head as text (latin1), without the final CRLFCRLF. */
  head: string;
  /** The body after framing is removed (de-chunked). */
  body: Buffer;
  /** How the body was framed. */
  framing: "none" | "length" | "chunked" | "close";
  /** Trailer fields of a chunked body, lower-cased names. */
  trailers: [string, string][];
  get(name: string): string | undefined;
  all(name: string): string[];
}

class Waiters {
  #waiters = new Set<() => void>();
  wake(): void {
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }
  /** Resolve once `cond()` is true; reject after `timeoutMs` with `what`. Re-checked on every wake. */
  until<T>(cond: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const now = cond();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        let v: T | undefined;
        try {
          v = cond();
        } catch (e) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          return reject(e);
        }
        if (v !== undefined) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve(v);
        } else this.#waiters.add(check);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }
}

const CRLF2 = Buffer.from("\r\n\r\n");

function headerList(lines: string[]): [string, string][] {
  return lines.map((l) => {
    const colon = l.indexOf(":");
    if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(l)}`);
    return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
  });
}

/**
 * Decode a chunked body starting at `off`. Returns undefined until it has all arrived, else
 * the body, the trailers and where it ended. Throws on bad framing.
 */
export function decodeChunked(buf: Buffer, off: number): { body: Buffer; trailers: [string, string][]; end: number } | undefined {
  const parts: Buffer[] = [];
  let pos = off;
  for (;;) {
    const eol = buf.indexOf("\r\n", pos, "latin1");
    if (eol < 0) return undefined;
    const sizeText = buf.toString("latin1", pos, eol).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)}`);
    const size = parseInt(sizeText, 16);
    pos = eol + 2;
    if (size === 0) {
      const trailers: string[] = [];
      for (;;) {
        const e = buf.indexOf("\r\n", pos, "latin1");
        if (e < 0) return undefined;
        const line = buf.toString("latin1", pos, e);
        pos = e + 2;
        if (line === "") return { body: Buffer.concat(parts), trailers: headerList(trailers), end: pos };
        trailers.push(line);
      }
    }
    if (buf.length < pos + size + 2) return undefined;
    parts.push(buf.subarray(pos, pos + size));
    if (buf[pos + size] !== 13 || buf[pos + size + 1] !== 10) throw new Error("chunk data not followed by CRLF");
    pos += size + 2;
  }
}

function makeResponse(init: Omit<RawResponse, "get" | "all">): RawResponse {
  return {
    ...init,
    get: (n) => init.headers.find(([k]) => k === n.toLowerCase())?.[1],
    all: (n) => init.headers.filter(([k]) => k === n.toLowerCase()).map(([, v]) => v),
  };
}

/** A client connection that writes raw bytes and reads raw responses. */
export class RawClient {
  #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #closed = false;
  #waiters = new Waiters();
  /** Every byte received, consumed or not. */
  received: Buffer = Buffer.alloc(0);

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
      this.received = Buffer.concat([this.received, chunk]);
      this.#waiters.wake();
    });
    const closed = () => {
      this.#closed = true;
      this.#waiters.wake();
    };
    // A reset (the server closed with our bytes unread) counts as closed too.
    socket.on("end", closed);
    socket.on("close", closed);
    socket.on("error", closed);
  }

  static connect(port: number, timeoutMs = 2000): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${port} timed out`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        s.removeAllListeners("error");
        resolve(new RawClient(s));
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** True once the peer closed (FIN or reset) or the socket errored. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received and not consumed by readResponse. */
  get pending(): Buffer {
    return this.#buf;
  }

  /** Write bytes; a string is sent as latin1 (one byte per char, so any byte can be written). */
  write(data: string | Uint8Array): void {
    if (this.#socket.destroyed || this.#closed) return;
    this.#socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Half-close: send FIN, keep reading. */
  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Resolves true once the connection is closed, false if it is still open after `timeoutMs`. */
  waitClosed(timeoutMs = 2000): Promise<boolean> {
    return this.#waiters.until(() => (this.#closed ? true : undefined), timeoutMs, "close").catch(() => false);
  }

  /** Wait for at least `n` unconsumed bytes (or close); returns them without consuming. */
  waitBytes(n: number, timeoutMs = 2000): Promise<Buffer> {
    return this.#waiters.until(() => (this.#buf.length >= n || this.#closed ? this.#buf : undefined), timeoutMs, `${n} bytes`);
  }

  /**
   * Read one response (a 1xx interim one too). "closed" when the connection closed before any
   * byte of it. `method` tells whether a body follows (HEAD: none). Rejects on a timeout, on a
   * malformed response, or on a close in the middle of one.
   */
  async readResponse(opts: { method?: string; timeoutMs?: number } = {}): Promise<RawResponse | "closed"> {
    const timeoutMs = opts.timeoutMs ?? 3000;
    const headEnd = await this.#waiters.until(
      () => {
        const i = this.#buf.indexOf(CRLF2);
        if (i >= 0) return i;
        if (this.#closed) return -1;
        return undefined;
      },
      timeoutMs,
      "a response head",
    );
    if (headEnd < 0) {
      if (this.#buf.length === 0) return "closed";
      throw new Error(`connection closed inside a response head: ${JSON.stringify(this.#buf.toString("latin1").slice(0, 200))}`);
    }
    const head = this.#buf.toString("latin1", 0, headEnd);
    const [statusLine, ...lines] = head.split("\r\n");
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine!);
    if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
    const status = Number(m[2]);
    const headers = headerList(lines);
    const get = (n: string) => headers.filter(([k]) => k === n).map(([, v]) => v);
    const bodyStart = headEnd + 4;
    const base = { version: m[1]!, status, reason: m[3] ?? "", headers, head, trailers: [] as [string, string][] };

    const noBody = opts.method === "HEAD" || status < 200 || status === 204 || status === 304;
    const te = get("transfer-encoding");
    const cl = get("content-length");
    if (noBody) {
      this.#buf = this.#buf.subarray(bodyStart);
      return makeResponse({ ...base, body: Buffer.alloc(0), framing: "none" });
    }
    if (te.length > 0) {
      if (te.join(",").toLowerCase().replace(/\s/g, "") !== "chunked") throw new Error(`unexpected transfer-encoding ${te.join(",")}`);
      if (cl.length > 0) throw new Error("response has both Transfer-Encoding and Content-Length");
      const decoded = await this.#waiters.until(
        () => {
          const d = decodeChunked(this.#buf, bodyStart);
          if (d) return d;
          if (this.#closed) throw new Error("connection closed inside a chunked response body");
          return undefined;
        },
        timeoutMs,
        "a chunked response body",
      );
      this.#buf = this.#buf.subarray(decoded.end);
      return makeResponse({ ...base, body: Buffer.from(decoded.body), trailers: decoded.trailers, framing: "chunked" });
    }
    if (cl.length > 0) {
      if (cl.length > 1 || !/^\d+$/.test(cl[0]!)) throw new Error(`bad content-length ${cl.join(",")}`);
      const n = Number(cl[0]);
      await this.#waiters.until(
        () => {
          if (this.#buf.length >= bodyStart + n) return true;
          if (this.#closed) throw new Error(`connection closed after ${this.#buf.length - bodyStart} of ${n} body bytes`);
          return undefined;
        },
        timeoutMs,
        `a ${n}-byte response body`,
      );
      const body = Buffer.from(this.#buf.subarray(bodyStart, bodyStart + n));
      this.#buf = this.#buf.subarray(bodyStart + n);
      return makeResponse({ ...base, body, framing: "length" });
    }
    // No framing: the body runs to the close of the connection.
    await this.#waiters.until(() => (this.#closed ? true : undefined), timeoutMs, "the end of a close-delimited body");
    const body = Buffer.from(this.#buf.subarray(bodyStart));
    this.#buf = Buffer.alloc(0);
    return makeResponse({ ...base, body, framing: "close" });
  }
}

/** The status of `r`, or "closed". */
export function outcome(r: RawResponse | "closed"): Outcome {
  return r === "closed" ? "closed" : r.status;
}

/** A request as the recording backend parsed it. */
export interface RecordedRequest {
  conn: number;
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  /** De-chunked body. */
  body: Buffer;
  /** How the body arrived. */
  framing: "none" | "length" | "chunked";
  trailers: [string, string][];
  get(name: string): string | undefined;
  all(name: string): string[];
}

/** What a recording backend answers: a full raw response, or a function that writes it itself. */
export type BackendReply = string | Buffer | ((socket: Socket) => void | Promise<void>);

export interface RecordingBackend {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Raw bytes received, indexed by connection number (sparse after reset()). */
  readonly raw: Buffer[];
  /** Framing errors seen (the connection is closed on one). */
  readonly errors: string[];
  /** The backend side of each connection, by connection number. */
  readonly sockets: Socket[];
  /** Connection numbers whose socket has closed. */
  readonly closedConns: Set<number>;
  /** Resolve with the connection number once some connection received at least `n` raw bytes. */
  waitBytes(n: number, timeoutMs?: number): Promise<number>;
  /** Resolve once connection `conn` is closed. */
  waitClosed(conn: number, timeoutMs?: number): Promise<void>;
  /** Every byte received on every connection, as latin1 text. */
  allBytes(): string;
  /** Resolve once `n` requests in all were recorded. */
  waitRequests(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  /** Forget everything recorded so far. */
  reset(): void;
  stop(): Promise<void>;
}

/** A 200 whose body is the request target; Content-Length framed, keep-alive. */
export function echoTarget(req: RecordedRequest): BackendReply {
  const body = `${req.method} ${req.target}`;
  return `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${
    Buffer.byteLength(body, "latin1")
  }\r\nx-seen-body: ${req.body.length}\r\n\r\n${body}`;
}

/**
 * A backend on raw TCP (node:net) that parses requests strictly enough to see smuggling: each
 * request head, then a body framed by Content-Length or chunked (a request with both is recorded
 * and flagged in `errors`). `reply` answers each request (default {@link echoTarget}).
 */
export function startRecordingBackend(reply: (req: RecordedRequest) => BackendReply = echoTarget): Promise<RecordingBackend> {
  const requests: RecordedRequest[] = [];
  const raw: Buffer[] = [];
  const errors: string[] = [];
  const sockets = new Set<Socket>();
  const byConn: Socket[] = [];
  const closedConns = new Set<number>();
  const waiters = new Waiters();
  let conns = 0;

  const server: Server = createServer((socket) => {
    const conn = conns++;
    sockets.add(socket);
    byConn[conn] = socket;
    socket.on("close", () => {
      sockets.delete(socket);
      closedConns.add(conn);
      waiters.wake();
    });
    socket.on("error", () => {});
    let buf: Buffer = Buffer.alloc(0);
    let queue = Promise.resolve();
    socket.on("data", (chunk: Buffer) => {
      raw[conn] = Buffer.concat([raw[conn] ?? Buffer.alloc(0), chunk]);
      waiters.wake();
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf(CRLF2);
        if (end < 0) return;
        const head = buf.toString("latin1", 0, end);
        const [line, ...lines] = head.split("\r\n");
        const m = /^(\S+) (\S+) HTTP\/(\d\.\d)$/.exec(line!);
        let headers: [string, string][];
        try {
          if (!m) throw new Error(`bad request line ${JSON.stringify(line)}`);
          headers = headerList(lines);
        } catch (e) {
          errors.push(String(e));
          socket.destroy();
          return;
        }
        const get = (n: string) => headers.filter(([k]) => k === n).map(([, v]) => v);
        const te = get("transfer-encoding");
        const cl = get("content-length");
        if (te.length > 0 && cl.length > 0) errors.push(`request ${m![2]} with both Transfer-Encoding and Content-Length`);
        if (cl.length > 1) errors.push(`request ${m![2]} with ${cl.length} Content-Length headers`);
        let body: Buffer;
        let framing: RecordedRequest["framing"];
        let trailers: [string, string][] = [];
        let next: number;
        if (te.length > 0) {
          if (te.join(",").toLowerCase().replace(/\s/g, "") !== "chunked") {
            errors.push(`request ${m![2]} with transfer-encoding ${te.join(",")}`);
            socket.destroy();
            return;
          }
          let d: ReturnType<typeof decodeChunked>;
          try {
            d = decodeChunked(buf, end + 4);
          } catch (e) {
            errors.push(String(e));
            socket.destroy();
            return;
          }
          if (!d) return;
          body = Buffer.from(d.body);
          trailers = d.trailers;
          framing = "chunked";
          next = d.end;
        } else if (cl.length > 0) {
          if (!/^\d+$/.test(cl[0]!)) {
            errors.push(`request ${m![2]} with content-length ${JSON.stringify(cl[0])}`);
            socket.destroy();
            return;
          }
          const n = Number(cl[0]);
          if (buf.length < end + 4 + n) return;
          body = Buffer.from(buf.subarray(end + 4, end + 4 + n));
          framing = "length";
          next = end + 4 + n;
        } else {
          body = Buffer.alloc(0);
          framing = "none";
          next = end + 4;
        }
        buf = buf.subarray(next);
        const req: RecordedRequest = {
          conn,
          method: m![1]!,
          target: m![2]!,
          version: m![3]!,
          headers,
          body,
          framing,
          trailers,
          get: (n) => headers.find(([k]) => k === n.toLowerCase())?.[1],
          all: (n) => headers.filter(([k]) => k === n.toLowerCase()).map(([, v]) => v),
        };
        requests.push(req);
        waiters.wake();
        const r = reply(req);
        // Answer in order, one request after the other, as HTTP/1.1 requires.
        queue = queue.then(async () => {
          if (socket.destroyed) return;
          if (typeof r === "function") await r(socket);
          else socket.write(typeof r === "string" ? Buffer.from(r, "latin1") : r);
        });
      }
    });
  });

  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        requests,
        raw,
        errors,
        sockets: byConn,
        closedConns,
        waitBytes: (n, timeoutMs = 3000) =>
          waiters.until(
            () => {
              const i = raw.findIndex((b) => b !== undefined && b.length >= n);
              return i >= 0 ? i : undefined;
            },
            timeoutMs,
            `${n} raw bytes at the backend`,
          ),
        waitClosed: (conn, timeoutMs = 3000) =>
          waiters.until(() => (closedConns.has(conn) ? true : undefined), timeoutMs, `backend connection ${conn} closed`).then(() => {}),
        allBytes: () => raw.filter((b) => b !== undefined).map((b) => b.toString("latin1")).join(""),
        waitRequests: (n, timeoutMs = 3000) =>
          waiters.until(() => (requests.length >= n ? requests : undefined), timeoutMs, `${n} backend request(s)`),
        reset() {
          requests.length = 0;
          raw.length = 0;
          errors.length = 0;
        },
        stop: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
