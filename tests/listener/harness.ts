/**
 * Shared by the listener's suites (tests/listener/*.test.ts): the client-facing listener
 * (core/listener/, bound by core/runtime/bun-listener.ts) under the conditions that leak or hang
 * a hand-written server. Real sockets on 127.0.0.1, real backends; every wait is for an event with
 * a bound, never a sleep.
 *
 * After each case the proxy must be idle again: no request in flight in the gateway, no backend
 * slot held, and a graceful shutdown that does not wait for its timeout.
 */
import { afterEach, describe, expect } from "bun:test";
import type { Socket } from "node:net";
import { startFulcrum, type InProcess } from "../helpers/fulcrum.ts";
import { tempDir } from "../helpers/plugins.ts";
import {
  RawClient,
  echoTarget,
  startRecordingBackend,
  type BackendReply,
  type RecordedRequest,
  type RecordingBackend,
} from "../helpers/raw-client.ts";

/** A promise that rejects after `ms` (bounds every wait). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms))),
  ]);
}

/** A deferred: resolve it from an event handler, await it from the test. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export const SHUTDOWN_TIMEOUT_MS = 8000;

/**
 * Behaviour of our own listener. Under FULCRUM_BUN_SERVE=1 (the Bun.serve front) these are
 * skipped: Bun.serve closes pipelined connections, has no header timeout of its own, etc. (see
 * the "Bun.serve gaps" in conformance-bun-serve-gaps.test.ts, which also runs on that front).
 * The other describes hold on both fronts.
 */
export const ownListener = process.env.FULCRUM_BUN_SERVE === "1" ? describe.skip : describe;

export interface Proxy {
  f: InProcess;
  port: number;
  /** Connect a raw client (destroyed after the test). */
  client(): Promise<RawClient>;
  /** Wait until nothing is in flight (gateway and backend slots), bounded. */
  idle(ms?: number): Promise<void>;
  /** Graceful shutdown; asserts it did not wait out its timeout. */
  stopPromptly(): Promise<void>;
}

/** A backend reply that sends a chunked head and one chunk, then holds the response open until the connection closes. */
export function holdOpen(onSocket?: (s: Socket) => void): BackendReply {
  return (s: Socket) => {
    onSocket?.(s);
    s.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
    return new Promise<void>((r) => s.once("close", () => r()));
  };
}

export function outcomeOf(r: Awaited<ReturnType<RawClient["readResponse"]>>): number | "closed" {
  return r === "closed" ? r : r.status;
}

/** The text received so far once it contains `needle`. */
export function waitFor(c: RawClient, needle: string): Promise<string> {
  return c.waitBytes(0).then(async function loop(): Promise<string> {
    const text = c.pending.toString("latin1");
    if (text.includes(needle)) return text;
    if (c.closed) throw new Error(`closed before ${JSON.stringify(needle)}: ${JSON.stringify(text)}`);
    await c.waitBytes(c.pending.length + 1, 3000);
    return loop();
  });
}

/**
 * Per file: the cleanups run after each test, a middleware plugin in a temp dir (removed after
 * the file), and the helpers that register what they start for cleanup.
 */
export function listenerHarness() {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

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

  async function proxy(
    be: RecordingBackend,
    opts: { middleware?: boolean; limits?: string; retries?: boolean; retry?: string } = {},
  ): Promise<Proxy> {
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

  return { cleanups, backend, proxy, pacedReader };
}
