/** Real backend servers on loopback for tests: each names itself and counts what it saw. */
import type { Server, Socket } from "bun";

export interface TestBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Requests received, in order. */
  readonly requests: { method: string; path: string; headers: Headers }[];
  stop(): Promise<void>;
}

type Handler = (req: Request, name: string) => Response | Promise<Response>;

const defaultHandler: Handler = (_req, name) => new Response(`hello from ${name}\n`, { headers: { "x-backend": name } });

/** Start a Bun.serve backend on 127.0.0.1 with a random port. */
export function startBackend(name: string, handler: Handler = defaultHandler): TestBackend {
  const requests: TestBackend["requests"] = [];
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    fetch(req) {
      const u = new URL(req.url);
      requests.push({ method: req.method, path: u.pathname + u.search, headers: req.headers });
      return handler(req, name);
    },
  });
  return {
    name,
    url: `http://127.0.0.1:${server.port}`,
    port: server.port!,
    requests,
    stop: () => server.stop(true),
  };
}

export function startBackends(count: number, handler?: Handler): TestBackend[] {
  return Array.from({ length: count }, (_, i) => startBackend(`b${i + 1}`, handler));
}

/**
 * A backend on raw TCP, for what Bun.serve will not do (arbitrary response bytes, closing a
 * kept-alive connection at a chosen moment). `onRequest` gets each request head as text.
 */
export interface RawBackend {
  readonly url: string;
  readonly port: number;
  /** Raw request heads received, with the connection number they arrived on. */
  readonly heads: { conn: number; head: string }[];
  stop(): void;
}

export function startRawBackend(
  onRequest: (head: string, socket: Socket<{ conn: number; buf: string }>, index: { conn: number; nthOnConn: number }) => void,
): RawBackend {
  const heads: RawBackend["heads"] = [];
  let conns = 0;
  const perConn = new Map<number, number>();
  const listener = Bun.listen<{ conn: number; buf: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { conn: ++conns, buf: "" };
      },
      data(s, chunk) {
        s.data.buf += chunk.toString("latin1");
        for (;;) {
          const end = s.data.buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = s.data.buf.slice(0, end);
          const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
          if (s.data.buf.length < end + 4 + len) return;
          s.data.buf = s.data.buf.slice(end + 4 + len);
          heads.push({ conn: s.data.conn, head });
          const n = (perConn.get(s.data.conn) ?? 0) + 1;
          perConn.set(s.data.conn, n);
          onRequest(head, s, { conn: s.data.conn, nthOnConn: n });
        }
      },
    },
  });
  return { url: `http://127.0.0.1:${listener.port}`, port: listener.port, heads, stop: () => listener.stop(true) };
}

/** A port nothing listens on: bind, read the port, close. */
export function closedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}
