/**
 * The client-facing listener (core/runtime/bun-listener.ts) under the conditions that leak or
 * hang a hand-written server: clients that leave at every stage, backends that fail mid-stream,
 * bodies nobody reads, pipelining, half-close, slow readers, non-ASCII header bytes. Real sockets
 * on 127.0.0.1, real backends; every wait is for an event with a bound, never a sleep.
 *
 * After each case the proxy must be idle again: no request in flight in the gateway, no backend
 * slot held, and a graceful shutdown that does not wait for its timeout.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { rssOf, spawnFulcrum, startFulcrum, type Child, type InProcess } from "./helpers/fulcrum.ts";
import { tempDir } from "./helpers/plugins.ts";
import { RawClient, echoTarget, startRecordingBackend, type BackendReply, type RecordedRequest, type RecordingBackend } from "./helpers/raw-client.ts";

setDefaultTimeout(20_000);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A promise that rejects after `ms` (bounds every wait). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms))),
  ]);
}

/** A deferred: resolve it from an event handler, await it from the test. */
function signal<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * A slow reader: a client that takes one read (up to 512 KiB) every `everyMs`. `onData` sees each
 * piece and the running total and says when the answer is complete; `done` rejects if the
 * connection closes first.
 */
async function pacedReader(port: number, everyMs: number, onData: (d: Uint8Array, total: number) => boolean) {
  let total = 0;
  let paused = false;
  const done = Promise.withResolvers<void>();
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(s, d) {
        total += d.length;
        if (onData(d, total)) return done.resolve();
        s.pause();
        paused = true;
      },
      close: () => done.reject(new Error(`closed after ${total} bytes`)),
    },
  });
  cleanups.push(() => sock.terminate());
  const pace = setInterval(() => {
    if (paused) {
      paused = false;
      sock.resume();
    }
  }, everyMs);
  cleanups.push(() => clearInterval(pace));
  return { sock, done: done.promise };
}

async function backend(reply: (req: RecordedRequest) => BackendReply = echoTarget): Promise<RecordingBackend> {
  const be = await startRecordingBackend(reply);
  cleanups.push(() => be.stop());
  return be;
}

const SHUTDOWN_TIMEOUT_MS = 8000;

/**
 * Behaviour of our own listener. Under FULCRUM_BUN_SERVE=1 (the Bun.serve front) these are
 * skipped: Bun.serve closes pipelined connections, has no header timeout of its own, etc. (see
 * the "Bun.serve gaps" in client-http1.test.ts, which also runs on that front). The other
 * describes hold on both fronts.
 */
const ownListener = process.env.FULCRUM_BUN_SERVE === "1" ? describe.skip : describe;

/** A middleware plugin: answers 401 without reading the body when `x-deny` is sent; else passes on. */
const plugins = tempDir("fulcrum-listener-");
const DENY = plugins.write(
  "deny.ts",
  `export default { kind: "middleware", name: "deny", create: () => async (c, next) => {
  if (c.req.header("x-deny")) return new Response("denied\\n", { status: 401 });
  if (c.req.header("x-replace")) {
    // Replaces the body but keeps the backend's headers, Content-Length included (stale).
    await next();
    c.res = new Response("replaced\\n", { status: c.res.status, headers: c.res.headers });
    return;
  }
  if (c.req.header("x-cookies")) {
    const h = new Headers();
    h.append("set-cookie", "a=1; Path=/");
    h.append("set-cookie", "b=2; Path=/; HttpOnly");
    h.append("set-cookie", "c=3");
    h.set("x-latin", "caf\\u00e9 \\u00ff");
    const status = Number(c.req.header("x-status") ?? 200);
    return new Response(status === 204 || c.req.method === "HEAD" ? null : "cookies\\n", { status, headers: h });
  }
  await next();
} };\n`,
);

interface Proxy {
  f: InProcess;
  port: number;
  /** Connect a raw client (destroyed after the test). */
  client(): Promise<RawClient>;
  /** Wait until nothing is in flight (gateway and backend slots), bounded. */
  idle(ms?: number): Promise<void>;
  /** Graceful shutdown; asserts it did not wait out its timeout. */
  stopPromptly(): Promise<void>;
}

async function proxy(be: RecordingBackend, opts: { middleware?: boolean; limits?: string; retries?: boolean; retry?: string } = {}): Promise<Proxy> {
  const route = opts.middleware ? `routes:\n  - { pool: web, middleware: [ { plugin: "${DENY}" } ] }\n` : "";
  const retry = opts.retry ?? (opts.retries ? "" : "    retry: { attempts: 1 }\n");
  const f = await startFulcrum(`pools:
  web:
    backends: ["${be.url}"]
${retry}${route}limits:
${opts.limits ?? "  max_request_body: 1mb\n  client_idle_timeout: 2s\n  client_body_timeout: 5s"}
shutdown_timeout: ${SHUTDOWN_TIMEOUT_MS}ms
log: { level: error, access_log: false }
admin: false
`);
  let stopped = false;
  cleanups.push(() => (stopped ? undefined : f.stop()));
  const port = f.server.listener.port;
  const pool = f.server.gateway.pools.get("web")!;
  return {
    f,
    port,
    async client() {
      const c = await RawClient.connect(port);
      cleanups.push(() => c.destroy());
      return c;
    },
    async idle(ms = 3000) {
      await within(f.server.gateway.drained(), ms, `gateway in flight ${f.server.gateway.inflight()}`);
      expect(f.server.gateway.inflight()).toBe(0);
      expect(pool.inflight).toBe(0);
      for (const b of pool.backends) expect(b.inflight).toBe(0);
    },
    async stopPromptly() {
      stopped = true;
      const t0 = performance.now();
      await within(f.stop(), SHUTDOWN_TIMEOUT_MS + 5000, "shutdown");
      expect(performance.now() - t0).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 2);
    },
  };
}

/** A backend reply that sends a chunked head and one chunk, then holds the response open until the connection closes. */
function holdOpen(onSocket?: (s: Socket) => void): BackendReply {
  return (s: Socket) => {
    onSocket?.(s);
    s.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
    return new Promise<void>((r) => s.once("close", () => r()));
  };
}

// ---------------------------------------------------------------------------------------------

describe("a client that leaves", () => {
  test("mid-head: nothing is dispatched, shutdown is prompt", async () => {
    const be = await backend();
    const p = await proxy(be);
    const c = await p.client();
    c.write("GET /half HTTP/1.1\r\nHost: x\r\nX-Partial: y");
    c.destroy();
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  for (const middleware of [false, true]) {
    const where = middleware ? "(middleware route)" : "(direct route)";

    test(`mid-body upload, Content-Length ${where}: the backend's request is aborted`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      // Big enough to be streamed, not buffered for a retry.
      const c = await p.client();
      c.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n${"a".repeat(1000)}`);
      // Wait for the backend to have the request head (its connection is then busy with our body).
      // The backend has the head and part of the body: its connection is busy with our request.
      const conn = await be.waitBytes(1000);
      c.destroy();
      await be.waitClosed(conn);
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });

    test(`mid-body upload, chunked ${where}: the backend's request is aborted`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write(`POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n${"a".repeat(1000)}\r\n`);
      // The backend has the head and part of the body: its connection is busy with our request.
      const conn = await be.waitBytes(1000);
      c.destroy();
      await be.waitClosed(conn);
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });

    test(`while waiting for the backend ${where}`, async () => {
      const got = signal<Socket>();
      const be = await backend((req) => (s: Socket) => {
        got.resolve(s);
        return new Promise<void>((r) => s.once("close", () => r()));
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
      const s = await within(got.promise, 3000, "backend got the request");
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.destroy();
      await within(closed, 3000, "backend connection closed");
      await p.idle();
      await p.stopPromptly();
    });

    test(`half-closes (FIN) while waiting for the backend ${where}: the request is aborted, as Bun.serve does`, async () => {
      const got = signal<Socket>();
      const be = await backend(() => (s: Socket) => {
        got.resolve(s);
        return new Promise<void>((r) => s.once("close", () => r()));
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
      const s = await within(got.promise, 3000, "backend got the request");
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.end();
      await within(closed, 3000, "backend connection closed");
      expect(await c.waitClosed(3000)).toBe(true);
      await p.idle();
      await p.stopPromptly();
    });

    test(`mid-streamed response ${where}`, async () => {
      const got = signal<Socket>();
      const be = await backend(() => holdOpen((s) => got.resolve(s)));
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
      // The head and the first piece reach the client although the backend holds the rest.
      const seen = await c.waitBytes(1, 3000).then(() => within(waitFor(c, "first\n"), 3000, "first event"));
      expect(seen).toContain("HTTP/1.1 200");
      const s = await got.promise;
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      c.destroy();
      await within(closed, 3000, "backend connection closed");
      await p.idle();
      await p.stopPromptly();
    });

    test(`during Expect: 100-continue ${where}`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("POST /cont HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n");
      const r = await c.readResponse();
      expect(r !== "closed" && r.status).toBe(100);
      c.destroy();
      await p.idle();
      expect(be.requests).toEqual([]);
      await p.stopPromptly();
    });
  }
});

function outcomeOf(r: Awaited<ReturnType<RawClient["readResponse"]>>): number | "closed" {
  return r === "closed" ? r : r.status;
}

/** The text received so far once it contains `needle`. */
function waitFor(c: RawClient, needle: string): Promise<string> {
  return c.waitBytes(0).then(async function loop(): Promise<string> {
    const text = c.pending.toString("latin1");
    if (text.includes(needle)) return text;
    if (c.closed) throw new Error(`closed before ${JSON.stringify(needle)}: ${JSON.stringify(text)}`);
    await c.waitBytes(c.pending.length + 1, 3000);
    return loop();
  });
}

ownListener("streamed answers", () => {
  for (const middleware of [false, true]) {
    test(`the head and first piece reach the client while the backend holds the rest ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const release = signal();
      const be = await backend(() => async (s: Socket) => {
        s.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
        await release.promise;
        s.write("7\r\nsecond\n\r\n0\r\n\r\n");
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
      // The rest is sent only once the first event was seen: a proxy that waits for more deadlocks.
      const seen = await within(waitFor(c, "first\n"), 3000, "the first event");
      expect(seen).toStartWith("HTTP/1.1 200");
      release.resolve();
      const r = await c.readResponse();
      expect(r !== "closed" && r.body.toString()).toBe("first\nsecond\n");
      await p.idle();
      await p.stopPromptly();
    });
  }

  test("a middleware's Response that ends at once goes out with its real length, not a stale Content-Length", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("GET /a-long-target-to-make-the-length-differ HTTP/1.1\r\nHost: x\r\nX-Replace: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = await c.readResponse();
    if (r === "closed") throw new Error("closed");
    expect(r.get("content-length")).toBe("9");
    expect(r.body.toString()).toBe("replaced\n");
    const n = await c.readResponse();
    expect(n !== "closed" && n.body.toString()).toBe("GET /after");
    await p.idle();
    await p.stopPromptly();
  });
});

describe("a backend that fails mid-stream", () => {
  for (const middleware of [false, true]) {
    test(`the client's connection is cut, not ended cleanly ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const be = await backend(() => (s: Socket) => {
        // A declared length, two pieces sent, then the backend dies.
        s.write("HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n");
        s.write(Buffer.alloc(70_000, 98));
        s.write(Buffer.alloc(30_000, 99), () => s.destroy());
      });
      const p = await proxy(be, { middleware });
      const c = await p.client();
      c.write("GET /dies HTTP/1.1\r\nHost: x\r\n\r\n");
      await c.waitBytes(12, 3000);
      if (c.pending.toString("latin1").startsWith("HTTP/1.1 200")) {
        // The head went out: the only honest end is a cut connection, short of the length.
        expect(await c.waitClosed(3000)).toBe(true);
        expect(c.received.length).toBeLessThan(300_000);
      } else {
        // Before any byte was written, an error status is honest too.
        const r = await c.readResponse();
        expect(r !== "closed" && r.status).toBeGreaterThanOrEqual(500);
      }
      await p.idle();
      await p.stopPromptly();
    });
  }
});

ownListener("a request body nobody reads", () => {
  test("a middleware answers before reading it: Connection: close, the connection closes, nothing is forwarded", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    // Part of a declared body, then a request pipelined behind it that must not be served.
    c.write(`POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 100000\r\n\r\n${"a".repeat(5000)}`);
    const r = await c.readResponse();
    if (r === "closed") throw new Error("no response");
    expect(r.status).toBe(401);
    expect(r.get("connection")).toBe("close");
    expect(await c.waitClosed(3000)).toBe(true);
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  test("a middleware answers before reading a body that had all arrived: the next pipelined request is served", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    const a = await c.readResponse();
    expect(a !== "closed" && a.status).toBe(401);
    const b = await c.readResponse();
    expect(b !== "closed" && b.body.toString()).toBe("GET /next");
    await p.idle();
    await p.stopPromptly();
  });

  for (const middleware of [false, true]) {
    test(`a chunked body over max_request_body mid-stream: 413, connection closed, the backend never gets it whole ${middleware ? "(middleware route)" : "(direct route)"}`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware, limits: "  max_request_body: 10000\n  client_idle_timeout: 2s\n  client_body_timeout: 5s" });
      const c = await p.client();
      c.write("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      // The backend gets the request head and a first piece before the limit is crossed.
      c.write(`1000\r\n${"a".repeat(0x1000)}\r\n`);
      await be.waitBytes(0x1000);
      c.write(`2000\r\n${"b".repeat(0x2000)}\r\n`);
      c.write(`10\r\n${"c".repeat(16)}\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      expect(r !== "closed" && r.status).toBe(413);
      expect(r !== "closed" && r.get("connection")).toBe("close");
      expect(await c.waitClosed(3000)).toBe(true);
      await p.idle();
      await be.waitClosed(0);
      // The backend's connection was cut inside the body: no request was completed, none followed.
      expect(be.requests).toEqual([]);
      expect(be.allBytes()).not.toContain("0\r\n\r\n");
      await p.stopPromptly();
    });
  }
});

ownListener("request bodies on a direct route", () => {
  for (const attempts of [1, 2]) {
    test(`bodies that came whole with their heads go upstream intact, one past the read-ahead too; the request behind them is served (retry attempts ${attempts})`, async () => {
      const be = await backend();
      const p = await proxy(be, { retry: `    retry: { attempts: ${attempts}, buffer_body_limit: 1mb }\n` });
      const c = await p.client();
      const small = "s".repeat(4096);
      // Past the read-ahead (64 KiB): reading pauses until the proxy takes the bytes waiting.
      const big = Buffer.alloc(300 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      c.write(
        Buffer.concat([
          Buffer.from(`POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: ${small.length}\r\n\r\n${small}`),
          Buffer.from(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`),
          big,
          Buffer.from("GET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]),
      );
      for (const want of ["POST /small", "POST /big", "GET /after"]) {
        const r = await c.readResponse();
        expect(r !== "closed" && r.body.toString()).toBe(want);
      }
      expect(be.requests.map((r) => [r.target, r.body.length, r.framing])).toEqual([["/small", 4096, "length"], ["/big", big.length, "length"], ["/after", 0, "none"]]);
      expect(be.requests[0]!.body.toString()).toBe(small);
      expect(be.requests[1]!.body.equals(big)).toBe(true);
      await p.idle();
      await p.stopPromptly();
    });
  }

  test("a body sent after its head (Expect: 100-continue) is asked for, waited for and arrives intact", async () => {
    const be = await backend();
    const p = await proxy(be, { retries: true });
    const c = await p.client();
    c.write("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    // Nothing of the body has come: the proxy asks for it when it reads it.
    const interim = await c.readResponse();
    expect(interim !== "closed" && interim.status).toBe(100);
    c.write("hello");
    c.write("world");
    const r = await c.readResponse();
    expect(r !== "closed" && r.body.toString()).toBe("POST /slow");
    expect(be.requests[0]!.body.toString()).toBe("helloworld");
    await p.idle();
    await p.stopPromptly();
  });
});

ownListener("HTTP/1.0, HEAD, Connection: close", () => {
  test("a streamed response of unknown length to an HTTP/1.0 client ends with the connection, whole", async () => {
    const body = Buffer.alloc(200_000);
    for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
    const be = await backend(() => async (s: Socket) => {
      s.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
      for (let off = 0; off < body.length; off += 50_000) {
        s.write(`${(50_000).toString(16)}\r\n`);
        s.write(body.subarray(off, off + 50_000));
        s.write("\r\n");
        await new Promise((r) => setImmediate(r));
      }
      s.write("0\r\n\r\n");
    });
    const p = await proxy(be);
    const c = await p.client();
    c.write("GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const r = await c.readResponse({ timeoutMs: 5000 });
    if (r === "closed") throw new Error("no response");
    expect(r.framing).toBe("close");
    expect(r.get("connection")).toBe("close");
    expect(Buffer.compare(r.body, body)).toBe(0);
    await p.idle();
    await p.stopPromptly();
  });

  test("HEAD through a middleware route: the backend's length, no body, the connection stays in sync", async () => {
    const be = await backend((req) =>
      req.method === "HEAD" ? "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-h: 1\r\n\r\n" : "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    );
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n");
    const h = await c.readResponse({ method: "HEAD" });
    if (h === "closed") throw new Error("no response");
    expect(h.status).toBe(200);
    expect(h.get("content-length")).toBe("11");
    expect(h.get("x-h")).toBe("1");
    const g = await c.readResponse();
    expect(g !== "closed" && g.body.toString()).toBe("hello world");
    await p.idle();
    await p.stopPromptly();
  });

  test("a 304 through a middleware route keeps the backend's Content-Length (never a made-up 0)", async () => {
    const be = await backend((req) =>
      req.target === "/304" ? 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 10\r\n\r\n' : "HTTP/1.1 304 Not Modified\r\netag: \"v2\"\r\n\r\n",
    );
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write("GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /304-bare HTTP/1.1\r\nHost: x\r\n\r\n");
    const a = await c.readResponse();
    if (a === "closed") throw new Error("closed");
    expect(a.status).toBe(304);
    expect([undefined, "10"]).toContain(a.get("content-length"));
    const b = await c.readResponse();
    if (b === "closed") throw new Error("closed");
    expect(b.status).toBe(304);
    expect(b.get("content-length")).toBeUndefined();
    await p.idle();
    await p.stopPromptly();
  });

  test("Connection: close from the backend is not passed on: the client's connection keeps serving", async () => {
    const be = await backend((req) => `HTTP/1.1 200 OK\r\ncontent-length: ${req.target.length}\r\nconnection: close\r\n\r\n${req.target}`);
    const p = await proxy(be);
    const c = await p.client();
    for (const t of ["/one", "/two", "/three"]) {
      c.write(`GET ${t} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      if (r === "closed") throw new Error("closed");
      expect(r.body.toString()).toBe(t);
      expect(r.get("connection")).toBeUndefined();
    }
    await p.idle();
    await p.stopPromptly();
  });
});

ownListener("response headers", () => {
  for (const [what, req] of [
    ["with a body", "GET /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\n\r\n"],
    ["without a body (204)", "GET /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\nX-Status: 204\r\n\r\n"],
    ["to HEAD", "HEAD /c HTTP/1.1\r\nHost: x\r\nX-Cookies: 1\r\n\r\n"],
  ] as const) {
    test(`a middleware's Response ${what}: every Set-Cookie separately, latin1 bytes kept`, async () => {
      const be = await backend();
      const p = await proxy(be, { middleware: true });
      const c = await p.client();
      c.write(req);
      const r = await c.readResponse({ method: req.startsWith("HEAD") ? "HEAD" : "GET" });
      if (r === "closed") throw new Error("closed");
      expect(r.all("set-cookie")).toEqual(["a=1; Path=/", "b=2; Path=/; HttpOnly", "c=3"]);
      // The head is read as latin1: one byte per character.
      expect(r.get("x-latin")).toBe("caf\u00e9 \u00ff");
      c.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
      const n = await c.readResponse();
      expect(n !== "closed" && n.body.toString()).toBe("GET /after");
      await p.idle();
      await p.stopPromptly();
    });
  }

  for (const [what, target] of [
    ["small", "/small"],
    ["streamed", "/streamed"],
    ["204", "/204"],
  ] as const) {
    test(`a backend header with bytes >= 0x80 reaches the client byte for byte (${what})`, async () => {
      const value = "caf\xe9 \xff\x80";
      const be = await backend((req) => {
        if (req.target === "/204") return `HTTP/1.1 204 No Content\r\nx-latin: ${value}\r\n\r\n`;
        if (req.target === "/after") return echoTarget(req);
        if (req.target === "/small") return `HTTP/1.1 200 OK\r\nx-latin: ${value}\r\ncontent-length: 2\r\n\r\nok`;
        // Over the 64 KiB read whole: streamed.
        return `HTTP/1.1 200 OK\r\nx-latin: ${value}\r\ncontent-length: 100002\r\n\r\nok${".".repeat(100_000)}`;
      });
      const p = await proxy(be);
      const c = await p.client();
      c.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      if (r === "closed") throw new Error("closed");
      expect(Buffer.from(r.get("x-latin")!, "latin1")).toEqual(Buffer.from(value, "latin1"));
      if (target !== "/204") expect(r.body.subarray(0, 2).toString()).toBe("ok");
      const n = await c.readResponse();
      expect(n !== "closed" && n.body.toString()).toBe("GET /after");
      await p.idle();
      await p.stopPromptly();
    });
  }
});

ownListener("a request slower than client_idle_timeout", () => {
  test("is answered: the idle timer, left running, is ignored while a request is in flight", async () => {
    // Bun checks socket timeouts on a 4 s tick: a 1 s timer armed at connect fires within 4 s,
    // while the backend takes 5 s to answer.
    const be = await backend((req) => async (s: Socket) => {
      if (req.target === "/slow") await new Promise((r) => setTimeout(r, 5000));
      s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${req.target.length}\r\n\r\n${req.target}`);
    });
    const p = await proxy(be, { limits: "  client_idle_timeout: 1s" });
    const c = await RawClient.connect(p.port);
    cleanups.push(() => c.destroy());
    c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    const slow = await c.readResponse({ timeoutMs: 10_000 });
    expect(slow === "closed" ? "closed" : slow.body.toString()).toBe("/slow");
    // The connection still serves.
    c.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    const after = await c.readResponse();
    expect(after === "closed" ? "closed" : after.body.toString()).toBe("/after");
  }, 15_000);
});

ownListener("a client that stops reading", () => {
  test("is cut after client_idle_timeout and its backend released; one that reads slowly is not cut", async () => {
    // Bun checks socket timeouts on a 4 s tick ((seconds + 3) >> 2 ticks): 5 s fires 4 to 8 s
    // after the last time the timer was armed.
    const IDLE_S = 5;
    const SLOW_SIZE = 24 * 1024 * 1024;
    const big = Buffer.alloc(1 << 20, 100);
    const released = signal();
    const be = await backend((req) => async (s: Socket) => {
      const size = req.target === "/stalled" ? 64 * big.length : SLOW_SIZE;
      if (req.target === "/stalled") s.once("close", () => released.resolve());
      s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
      for (let sent = 0; sent < size && !s.destroyed; sent += big.length) {
        if (!s.write(big)) await new Promise<void>((r) => {
          const go = () => (s.off("drain", go), s.off("close", go), r());
          s.on("drain", go).on("close", go);
        });
      }
    });
    const p = await proxy(be, { limits: `  client_idle_timeout: ${IDLE_S}s` });

    // The stalled client: reads the first bytes, then never again.
    const firstBytes = signal();
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: p.port,
      socket: {
        data(s) {
          s.pause();
          firstBytes.resolve();
        },
      },
    });
    cleanups.push(() => stalled.terminate());
    stalled.write("GET /stalled HTTP/1.1\r\nHost: x\r\n\r\n");

    // The slow reader: one read (up to 512 KiB) every 200 ms, 24 MiB: about 10 s, longer than the
    // idle timer can last unless each read re-arms it.
    let total = 0;
    let paused = false;
    const done = Promise.withResolvers<void>();
    const slow = await Bun.connect({
      hostname: "127.0.0.1",
      port: p.port,
      socket: {
        data(s, d) {
          total += d.length;
          if (total >= SLOW_SIZE) return done.resolve();
          s.pause();
          paused = true;
        },
        close: () => done.reject(new Error(`slow reader cut after ${total} of ${SLOW_SIZE} bytes`)),
      },
    });
    cleanups.push(() => slow.terminate());
    const pace = setInterval(() => {
      if (paused) {
        paused = false;
        slow.resume();
      }
    }, 200);
    cleanups.push(() => clearInterval(pace));
    slow.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");

    await within(firstBytes.promise, 3000, "the stalled client's first bytes");
    const started = performance.now();
    await within(released.promise, (2 * IDLE_S + 4) * 1000, "the stalled client's backend connection released");
    expect(performance.now() - started).toBeGreaterThan(1000);
    await within(done.promise, 30_000, "the slow reader's whole answer");
    expect(performance.now() - started).toBeGreaterThan(2 * IDLE_S * 1000 - 4000);
    await p.idle();
    await p.stopPromptly();
  }, 40_000);
});

ownListener("pipelining", () => {
  test("answers to pipelined requests wait for the client to read the ones before (no unbounded queue)", async () => {
    const N = 500;
    const PIECE = 64 * 1024; // read whole by the upstream client: each answer is one buffer
    const piece = "x".repeat(PIECE);
    const be = await backend(() => `HTTP/1.1 200 OK\r\ncontent-length: ${PIECE}\r\n\r\n${piece}`);
    const p = await proxy(be);
    let request = "";
    for (let i = 0; i < N; i++) request += `GET /p?${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    let headLength = 0;
    // Answers fetched from the backend but not yet read by the client: held in Fulcrum or in the
    // kernel's buffers. Sampled at every read.
    let ahead = 0;
    // A slow reader: one read every 40 ms, ~2.5 s in all.
    const { sock, done } = await pacedReader(p.port, 40, (d, total) => {
      if (headLength === 0) headLength = Buffer.from(d).indexOf("\r\n\r\n") + 4;
      ahead = Math.max(ahead, be.requests.length * (headLength + PIECE) - total);
      return total >= N * (headLength + PIECE);
    });
    sock.write(request);
    await within(done, 15_000, "all the answers");
    expect(be.requests.length).toBe(N);
    // Before: the answers were fetched and queued as fast as the backend gave them (~25 MB ahead
    // of a reader that had read a few); now the kernel's buffers and one answer (~5 MB).
    expect(ahead).toBeLessThan(15 * 1024 * 1024);
    await p.idle();
    await p.stopPromptly();
  });


  test("a slow reader's answers stay intact while other clients' answers go out (one shared write buffer)", async () => {
    // Whole answers go out through one reused buffer; what the kernel does not take at once must be
    // copied, or the next answer on another connection overwrites it before it is sent.
    const N = 150;
    const SIZE = 60_000;
    const letter = (target: string) => (target.startsWith("/b") ? "Z" : String.fromCharCode(97 + (Number(target.split("?")[1]) % 26)));
    const be = await backend((req) => `HTTP/1.1 200 OK\r\ncontent-length: ${SIZE}\r\n\r\n${letter(req.target).repeat(SIZE)}`);
    const p = await proxy(be);
    let request = "";
    for (let i = 0; i < N; i++) request += `GET /a?${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const parts: Buffer[] = [];
    const { sock, done } = await pacedReader(p.port, 30, (d, total) => {
      parts.push(Buffer.from(d));
      return total >= N * SIZE && Buffer.concat(parts).toString("latin1").split("HTTP/1.1 200 OK").length > N;
    });
    sock.write(request);
    // Meanwhile another client's answers (all "Z") go through the same buffer.
    let others = 0;
    let finished = false;
    done.then(() => (finished = true), () => (finished = true));
    while (!finished && others < 2000) {
      const r = await fetch(`http://127.0.0.1:${p.port}/b?${others++}`);
      expect((await r.text()).length).toBe(SIZE);
    }
    await within(done, 20_000, "all the answers");
    const answers = Buffer.concat(parts).toString("latin1").split("HTTP/1.1 200 OK").slice(1);
    expect(answers.length).toBe(N);
    for (let i = 0; i < N; i++) {
      const body = answers[i]!.slice(answers[i]!.indexOf("\r\n\r\n") + 4);
      expect(body).toBe(letter(`/a?${i}`).repeat(SIZE));
    }
    expect(others).toBeGreaterThan(10);
    await p.idle();
    await p.stopPromptly();
  });

  test("requests pipelined behind one whose body was not read are not served; the connection closes", async () => {
    const be = await backend();
    const p = await proxy(be, { middleware: true });
    const c = await p.client();
    c.write(`POST /deny HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 10\r\n\r\nabc`);
    const r = await c.readResponse();
    expect(r !== "closed" && r.status).toBe(401);
    // The rest of the body, then what looks like a request: it is body bytes, never a request.
    c.write(`defghijGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await c.waitClosed(3000)).toBe(true);
    await p.idle();
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });
});

ownListener("the request head", () => {
  test("a head trickling in a byte at a time is answered 408 within client_idle_timeout (plus the sweep's second)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 1s" });
    const c = await p.client();
    const started = performance.now();
    const text = "GET /trickle HTTP/1.1\r\nHost: x\r\nX-Long: " + "y".repeat(1000);
    let i = 0;
    // Pacing, not synchronisation: each byte keeps the connection's idle timer from firing.
    const pace = setInterval(() => c.write(text[i++ % text.length]!), 100);
    cleanups.push(() => clearInterval(pace));
    const r = await c.readResponse({ timeoutMs: 4000 });
    clearInterval(pace);
    expect(r !== "closed" && r.status).toBe(408);
    expect(performance.now() - started).toBeLessThan(2600);
    expect(be.requests).toEqual([]);
    await p.stopPromptly();
  });

  test("client_idle_timeout: 0 turns the head timeout off too (it was 1 s)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 0s" });
    const c = await p.client();
    const started = performance.now();
    const text = "GET /patient HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456789012345\r\n\r\n";
    let i = 0;
    // Pacing, not synchronisation: the head takes about 2.5 s to arrive.
    const pace = setInterval(() => i < text.length && c.write(text[i++]!), 2500 / text.length);
    cleanups.push(() => clearInterval(pace));
    const r = await c.readResponse({ timeoutMs: 6000 });
    clearInterval(pace);
    expect(r !== "closed" && r.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThan(2000);
    await p.stopPromptly();
  });

  test("empty lines before a request are bounded like a head (no unbounded buffering)", async () => {
    const be = await backend();
    const p = await proxy(be, { limits: "  client_idle_timeout: 10s" });
    const c = await p.client();
    const crlf = Buffer.from("\r\n".repeat(8192));
    for (let i = 0; i < 16; i++) c.write(crlf); // 256 KiB of empty lines
    const r = await c.readResponse({ timeoutMs: 3000 });
    expect([400, 431, "closed"]).toContain(r === "closed" ? r : r.status);
    expect(await c.waitClosed(3000)).toBe(true);
    await p.stopPromptly();
  });
});

describe("memory stays bounded with slow peers (Fulcrum in its own process, RSS measured)", () => {
  const MB = 1024 * 1024;
  const BIG = 100 * MB;
  const PIECE = 64 * 1024;
  let child: Child;
  let server: import("node:net").Server;
  let uploaded = 0;

  /** A backend on node:net: GET /big streams 100 MB, POST reads its body slowly. */
  beforeAll(async () => {
    const { createServer } = await import("node:net");
    const piece = Buffer.alloc(PIECE, 120);
    server = createServer((s) => {
      s.on("error", () => {});
      let pace: ReturnType<typeof setInterval> | undefined;
      s.once("close", () => clearInterval(pace));
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = buf.toString("latin1", 0, end);
          buf = buf.subarray(end + 4);
          if (head.startsWith("GET /big")) {
            s.off("data", onData);
            void (async () => {
              s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BIG}\r\n\r\n`);
              for (let sent = 0; sent < BIG && !s.destroyed; sent += PIECE) {
                if (!s.write(piece)) {
                  await new Promise<void>((r) => {
                    const go = () => (s.off("drain", go), s.off("close", go), r());
                    s.on("drain", go).on("close", go);
                  });
                }
              }
              s.on("data", onData);
            })();
            return;
          } else if (head.startsWith("POST")) {
            const length = Number(/content-length: (\d+)/i.exec(head)![1]);
            s.off("data", onData);
            let got = buf.length;
            buf = Buffer.alloc(0);
            // Read slowly: 1 MiB every 10 ms (~100 MB/s), the rest waits in Fulcrum's and the kernel's buffers.
            s.pause();
            pace = setInterval(() => {
              let chunk: Buffer | null;
              let n = 0;
              while (n < MB && (chunk = s.read()) !== null) n += chunk.length;
              got += n;
              if (got >= length) {
                clearInterval(pace);
                uploaded = got;
                s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${String(got).length}\r\n\r\n${got}`);
                s.resume();
                s.on("data", onData);
              }
            }, 10);
            return;
          }
        }
      };
      s.on("data", onData);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const file = dir.write(
      "fulcrum.yaml",
      `listen: 127.0.0.1:0\nworkers: 1\npools:\n  web:\n    backends: ["http://127.0.0.1:${port}"]\n    retry: { attempts: 1 }\nlog: { access_log: false }\nadmin: false\n`,
    );
    child = await spawnFulcrum(["run", "--config", file]);
    // Warm up: JIT, pools.
    for (let i = 0; i < 20; i++) await (await fetch(`${child.url}/`, { method: "POST", body: "x" })).text();
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await child?.exited;
    await new Promise((r) => server?.close(r));
  });
  // Made here, after the afterAll above, so that it is removed after the child is stopped (afterAll
  // hooks run in order), and not in beforeAll: one made there is removed when the hook ends.
  const dir = tempDir("fulcrum-listener-rss-");

  /** Peak RSS of the child while `work` runs (sampled every 20 ms). */
  async function peakRss<T>(work: Promise<T>): Promise<{ result: T; growth: number }> {
    const before = rssOf(child.proc.pid);
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rssOf(child.proc.pid))), 20);
    try {
      const result = await work;
      return { result, growth: Math.max(peak, rssOf(child.proc.pid)) - before };
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Send `request` on a new connection and read the answers slowly: one read from the socket
   * every `tickMs` (Bun reads up to 512 KiB at a time), until `expected(head)` bytes arrived.
   * Resolves with the bytes received.
   */
  async function slowRead(request: string, expected: (head: string) => number, tickMs: number): Promise<number> {
    let total = 0;
    let want = Infinity;
    let head = "";
    let paused = false;
    const done = Promise.withResolvers<number>();
    const s = await Bun.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(child.url).port),
      socket: {
        data(sock, d) {
          if (want === Infinity) {
            head += d.toString("latin1", 0, Math.min(d.length, 200));
            const end = head.indexOf("\r\n\r\n");
            if (end >= 0) want = expected(head.slice(0, end + 4));
          }
          total += d.length;
          if (total >= want) return done.resolve(total);
          sock.pause();
          paused = true;
        },
        close: () => done.reject(new Error(`closed after ${total} bytes`)),
        error: (_s, e) => done.reject(e),
      },
    });
    const pace = setInterval(() => {
      if (paused) {
        paused = false;
        s.resume();
      }
    }, tickMs);
    s.write(request);
    try {
      return await done.promise;
    } finally {
      clearInterval(pace);
      s.terminate();
    }
  }

  test(`a 100 MB download to a slow reader: RSS grows < 64 MB`, async () => {
    const { result, growth } = await peakRss(slowRead("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", (head) => head.length + BIG, 5));
    expect(result).toBeGreaterThanOrEqual(BIG);
    console.info(`RSS growth ${(growth / MB).toFixed(1)} MB`);
    expect(growth).toBeLessThan(64 * MB);
  });

  test(`a 100 MB upload to a backend that reads slowly: RSS grows < 64 MB`, async () => {
    const { connect } = await import("node:net");
    const upload = new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: Number(new URL(child.url).port) });
      let got = "";
      s.on("data", (d) => {
        got += d.toString("latin1");
        if (/\r\n\r\n\d+$/.test(got) && got.endsWith(String(BIG))) {
          s.destroy();
          resolve(got);
        }
      });
      s.on("error", reject);
      s.once("close", () => reject(new Error(`closed: ${got}`)));
      s.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG}\r\n\r\n`);
      const piece = Buffer.alloc(MB, 117);
      let sent = 0;
      const pump = () => {
        while (sent < BIG) {
          sent += MB;
          if (!s.write(piece)) return void s.once("drain", pump);
        }
      };
      pump();
    });
    const { result, growth } = await peakRss(upload);
    expect(result).toStartWith("HTTP/1.1 200");
    expect(uploaded).toBe(BIG);
    console.info(`RSS growth ${(growth / MB).toFixed(1)} MB`);
    expect(growth).toBeLessThan(64 * MB);
  });
});

ownListener("graceful shutdown", () => {
  test("a request in flight is answered with Connection: close, an idle connection closes at once", async () => {
    const got = signal<Socket>();
    const release = signal();
    const be = await backend((req) =>
      req.target === "/slow"
        ? async (s: Socket) => {
            got.resolve(s);
            await release.promise;
            s.write("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate");
          }
        : echoTarget(req),
    );
    const p = await proxy(be);
    const idle = await p.client();
    idle.write("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(outcomeOf(await idle.readResponse())).toBe(200);
    const busy = await p.client();
    busy.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    await within(got.promise, 3000, "backend got the request");
    const t0 = performance.now();
    const stopping = p.f.stop();
    expect(await idle.waitClosed(3000)).toBe(true);
    release.resolve();
    const r = await busy.readResponse();
    if (r === "closed") throw new Error("no answer");
    expect(r.body.toString()).toBe("late");
    expect(r.get("connection")).toBe("close");
    expect(await busy.waitClosed(3000)).toBe(true);
    await within(stopping, SHUTDOWN_TIMEOUT_MS + 2000, "shutdown");
    expect(performance.now() - t0).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 2);
  });
});

describe("FULCRUM_BUN_SERVE=1", () => {
  test("switches the proxy port back to Bun.serve, which still proxies (bodies both ways, streaming)", async () => {
    const be = await backend((req) =>
      req.target === "/stream"
        ? (s: Socket) => {
            s.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
            return new Promise<void>((r) => setImmediate(() => s.write("6\r\n world\r\n0\r\n\r\n", () => r())));
          }
        : `HTTP/1.1 200 OK\r\ncontent-length: ${req.body.length}\r\n\r\n${req.body.toString("latin1")}`,
    );
    const previous = process.env.FULCRUM_BUN_SERVE;
    process.env.FULCRUM_BUN_SERVE = "1";
    let p: Proxy;
    try {
      p = await proxy(be);
    } finally {
      if (previous === undefined) delete process.env.FULCRUM_BUN_SERVE;
      else process.env.FULCRUM_BUN_SERVE = previous;
    }
    const c = await p.client();
    c.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n\r\n");
    const r = await c.readResponse();
    if (r === "closed") throw new Error("closed");
    expect(r.body.toString()).toBe("ping");
    // Bun.serve's own head (its Date header is capitalised; ours is not).
    expect(r.head).toContain("\r\nDate: ");
    c.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const s = await c.readResponse();
    expect(s !== "closed" && s.body.toString()).toBe("hello world");
    await p.idle();
    await p.stopPromptly();
  });
});
