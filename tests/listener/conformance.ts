/**
 * Shared by the conformance suites (tests/listener/conformance-*.test.ts) of Fulcrum's
 * CLIENT-facing HTTP/1.1 side, over real sockets on 127.0.0.1: what a client gets for malformed,
 * hostile and unusual requests, and what the backend behind it sees. Raw bytes go in
 * (tests/helpers/raw-client.ts), raw replies are parsed strictly, and a raw recording backend
 * parses every request Fulcrum forwards, so a smuggled second request, a request forwarded with
 * both Content-Length and Transfer-Encoding, or a body that is not byte-identical is seen. This is
 * the safety net for replacing Bun.serve with our own listener.
 *
 * The rule for a hostile request: the client gets the status (or the connection is closed), the
 * backend never sees a smuggled request (nor the marker `smuggled` anywhere in its bytes), and
 * Fulcrum goes on serving a normal request on a new connection.
 *
 * Where two answers are both safe, a test accepts that set explicitly, with the reason. Behaviour
 * that the Bun.serve front (FULCRUM_BUN_SERVE=1) gets wrong and our own listener (the default)
 * gets right is in conformance-bun-serve-gaps.test.ts: those tests run on the default front and
 * are skipped under FULCRUM_BUN_SERVE=1. Everything else passes on both fronts.
 */
import { afterAll, beforeAll, beforeEach, expect } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import {
  RawClient,
  echoTarget,
  outcome,
  startRecordingBackend,
  type BackendReply,
  type Outcome,
  type RawResponse,
  type RecordedRequest,
  type RecordingBackend,
} from "../helpers/raw-client.ts";
import { testScope } from "../helpers/scope.ts";

/** A request that must never reach the backend: it follows the hostile message on the wire. */
export const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
/** Written after a response, on the same connection: the next answer must be for it, not for a smuggled request. */
export const SENTINEL = "GET /sentinel HTTP/1.1\r\nHost: x\r\n\r\n";

export const MAX_BODY = 1024; // limits.max_request_body
export const IDLE_MS = 1000; // limits.client_idle_timeout
export const BODY_TIMEOUT_MS = 1000; // limits.client_body_timeout

/** Every byte value once. */
export const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** 150 KiB with every byte value, streamed chunked by the backend in 5000-byte chunks. */
export const STREAMED = Buffer.alloc(150 * 1024);
for (let i = 0; i < STREAMED.length; i++) STREAMED[i] = (i * 7 + (i >> 8)) & 0xff;

function streamChunked(body: Buffer, chunk: number): BackendReply {
  return async (s: Socket) => {
    s.write("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n");
    for (let off = 0; off < body.length; off += chunk) {
      const part = body.subarray(off, off + chunk);
      s.write(`${part.length.toString(16)}\r\n`);
      s.write(part);
      s.write("\r\n");
      // Yield so the body leaves as a stream of writes, not one buffer.
      await new Promise((r) => setImmediate(r));
    }
    s.write("0\r\n\r\n");
  };
}

function backendReply(req: RecordedRequest): BackendReply {
  switch (req.target) {
    case "/204":
      return "HTTP/1.1 204 No Content\r\nx-kind: no-content\r\n\r\n";
    case "/304":
      // A 304 may carry the Content-Length of the representation; it never has a body.
      return 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 10\r\n\r\n';
    case "/head":
      return req.method === "HEAD"
        ? "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
        : "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nhello world";
    case "/stream":
      return streamChunked(STREAMED, 5000);
    case "/head-chunked":
      return req.method === "HEAD"
        ? "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        : "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    case "/forwarded-lines":
      // Framing and hop-by-hop lines first, in the middle and last, names in odd case, odd spacing,
      // a value with a byte >= 0x80: everything else must arrive byte for byte, in order.
      return (
        "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-First:one\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" +
        "CONTENT-LENGTH: 2\r\nProxy-Connection: x\r\nSet-Cookie: a=1\r\nset-cookie: b=2  \r\nX-Latin: caf\xe9\r\n" +
        "conNection: Keep-Alive\r\nTE: trailers\r\nX-Last: \t tab\r\nUpgrade: h2c\r\n\r\nok"
      );
    case "/forwarded-no-date":
      return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Only: 1\r\n\r\nok";
    default:
      return echoTarget(req);
  }
}

// Live bindings: each suite file's conformanceSuite() sets them for its tests.
export let scope: ReturnType<typeof testScope>;
export let be: RecordingBackend;
let fulcrum: InProcess;
let port: number;

/**
 * Call at the top of a suite file: one Fulcrum and one recording backend for the whole file,
 * every hostile case hits the same process, so "still serving afterwards" covers everything sent
 * before it too.
 */
export function conformanceSuite(): void {
  scope = testScope();
  beforeAll(start);
  afterAll(stop);
  beforeEach(() => be.reset());
}

async function start(): Promise<void> {
  be = await startRecordingBackend(backendReply);
  fulcrum = await startFulcrum(`pools:
  web:
    backends: ["${be.url}"]
routes:
  - { match: { path: / }, pool: web }
  # A route with middleware: its requests go through the web Request (toRequest), not the bytes.
  - { match: { path: /abs-mw }, pool: web, middleware: [{ rate-limit: { rate: 1000000/s } }] }
limits:
  max_request_body: ${MAX_BODY}
  client_idle_timeout: ${IDLE_MS}ms
  client_body_timeout: ${BODY_TIMEOUT_MS}ms
log: { level: error, access_log: false }
admin: false
`);
  port = fulcrum.server.listener.port;
}

async function stop(): Promise<void> {
  await fulcrum?.stop();
  await be?.stop();
}

/** A raw client connection to Fulcrum, destroyed after the test. */
export async function client(): Promise<RawClient> {
  const c = await RawClient.connect(port);
  scope.cleanups.push(() => c.destroy());
  return c;
}

export function bodyText(r: RawResponse | "closed"): string {
  if (r === "closed") throw new Error("expected a response, the connection was closed");
  return r.body.toString("latin1");
}

let probes = 0;
/**
 * A normal GET on a new connection gets 200 from the backend (the process is up and serving),
 * then: no smuggled request reached the backend, and nothing was forwarded with ambiguous framing.
 */
export async function expectStillServingAndNoSmuggling(): Promise<void> {
  const target = `/probe-${++probes}`;
  const c = await client();
  c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const r = await c.readResponse();
  expect(outcome(r)).toBe(200);
  expect(bodyText(r)).toBe(`GET ${target}`);
  expect(be.requests.map((q) => q.target)).not.toContain("/smuggled");
  expect(be.allBytes()).not.toContain("smuggled");
  expect(be.errors).toEqual([]);
}

export interface Exchange {
  /** The first response, or "closed" without one. */
  first: RawResponse | "closed";
  outcome: Outcome;
  /** The connection was closed after the first response (a sentinel request written on it got no answer). */
  closedAfter: boolean;
  /** The answer to the sentinel request when the connection stayed open. */
  sentinel?: RawResponse;
}

/** Send `bytes` on a new connection; read one response; then see whether the connection still serves, in order. */
export async function exchange(bytes: string | Buffer, method?: string): Promise<Exchange> {
  const c = await client();
  c.write(bytes);
  const first = await c.readResponse({ method });
  if (first === "closed") return { first, outcome: "closed", closedAfter: true };
  c.write(SENTINEL);
  const next = await c.readResponse();
  if (next === "closed") return { first, outcome: first.status, closedAfter: true };
  return { first, outcome: first.status, closedAfter: false, sentinel: next };
}

/**
 * A request that must be refused: its outcome is one of `allowed` (by default 400), the
 * connection is closed after it (RFC 9112 §6.3: after a framing error the server MUST close;
 * for a malformed head nothing after it can be trusted either), nothing reached the backend,
 * and Fulcrum still serves.
 */
export async function expectRejected(bytes: string | Buffer, allowed: Outcome[] = [400]): Promise<Exchange> {
  const ex = await exchange(bytes);
  expect(allowed).toContain(ex.outcome);
  expect(ex.closedAfter).toBe(true);
  expect(be.requests.filter((q) => !q.target.startsWith("/probe-"))).toEqual([]);
  await expectStillServingAndNoSmuggling();
  return ex;
}
